"""The benchmark tasks, one module each; importing this package registers them all.

    from sky_eval.tasks import get_task, PromptConfig
    task = get_task("math500")
    problems = task.load(data_dir="../shared/data", limit=10)
    messages = task.messages(problems[0], PromptConfig(boxed="after", system="sky_t1"))
    scores = task.score([(problems[0], "... \\boxed{3}")])

Adding a task is one small module (see math500.py) imported below.
"""

from sky_eval.tasks import (  # noqa: F401  (each registers itself)
    aime24,
    aime25,
    amc23,
    apps,
    gpqa_diamond,
    gsm8k,
    humaneval,
    livecodebench,
    math500,
    olympiadbench,
    taco,
    toy_addition,
)
from sky_eval.tasks.base import TASKS, Problem, PromptConfig, Score, Task, get_task

__all__ = ["TASKS", "Problem", "PromptConfig", "Score", "Task", "get_task"]
