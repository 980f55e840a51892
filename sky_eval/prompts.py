"""The prompt templates of every task, by name, and the chat messages built from them.

The strings are those of the original Sky-T1 evaluation (NovaSky-AI/SkyThought, `skythought/tools/tasks/*.yaml`),
so a number measured here can be set beside a published one. Two things are ours and say so below: the
boxed-after placement for GPQA (the original had only the boxed-before one) and the HumanEval prompt (Sky-T1
did not evaluate HumanEval).

Templates are `str.format` strings: `{{}}` is a literal `{}`, so `\\boxed{{}}` renders as `\\boxed{}`.

`PromptConfig.boxed` places the `\\boxed{}` instruction for math and GPQA: "before" the problem (SkyThought's
default template) or "after" it (its "sky" AIME variant). `PromptConfig.system` is None (no system message),
"sky_t1" (`SKY_T1_SYSTEM_PROMPT`, the system prompt of the Sky-T1 SFT data: a model trained on it drops the
thought/solution markers without it) or any other string, used verbatim. Code prompts ignore `boxed`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sky_eval.tasks.base import PromptConfig

__all__ = [
    "APPS_FUNCTIONAL",
    "APPS_STDIN",
    "BOXED_PLACEMENTS",
    "GPQA_BOXED_AFTER",
    "GPQA_BOXED_BEFORE",
    "HUMANEVAL",
    "LCB_FUNCTIONAL",
    "LCB_STDIN",
    "MATH_BOXED_AFTER",
    "MATH_BOXED_BEFORE",
    "SYSTEM_PROMPTS",
    "TACO_CALL",
    "TACO_QUESTION",
    "TACO_STDIN",
    "WITH_STARTER_CODE",
    "chat",
    "choice_prompt",
    "math_prompt",
    "system_prompt",
]

BOXED_PLACEMENTS = ("before", "after")

# ---------------------------------------------------------------- math (math500, aime, amc, olympiadbench, gsm8k)

# SkyThought math500/aime/amc23/olympiadbench `template` / aime `regular_template`.
MATH_BOXED_BEFORE = "Return your final response within \\boxed{{}}. {problem}"
# SkyThought aime `sky_template`.
MATH_BOXED_AFTER = "{problem}\nReturn your final response within \\boxed{{}}"

# ---------------------------------------------------------------- multiple choice (gpqa_diamond)

# SkyThought gpqa_diamond `template`; {prompt} is the question, a newline, then the options "A. ...\nB. ...".
GPQA_BOXED_BEFORE = (
    "Return your final response within \\boxed{{}} and only include the letter choice (A, B, C, or D) as your "
    "final response. {prompt}"
)
# Ours: the same instruction after the options, for runs that use the boxed-after placement throughout.
GPQA_BOXED_AFTER = (
    "{prompt}\nReturn your final response within \\boxed{{}} and only include the letter choice (A, B, C, or D) "
    "as your final response."
)

# ---------------------------------------------------------------- code

# SkyThought livecodebench `stdin_template` / `non_stdin_template` (APPS uses the same two strings).
LCB_STDIN = (
    "Generate an executable Python function generated from the given prompt. The function should take stdin as "
    "input and print the output. Simply call the function after the definition. {prompt}"
)
LCB_FUNCTIONAL = (
    "Generate an executable Python function generated from the given prompt. Return the function body without "
    "invoking it at the final solution. {prompt}"
)
APPS_STDIN = LCB_STDIN
APPS_FUNCTIONAL = LCB_FUNCTIONAL
# SkyThought apps `with_starter_code_template`: the starter code follows the instruction and problem. We add it
# for LiveCodeBench's functional problems too: without it the model cannot know the method the tests call.
WITH_STARTER_CODE = "{input}\n{starter_code}"

# SkyThought taco `initial_template`, `starter_code_template` (= WITH_STARTER_CODE), `stdin_template`,
# `call_template` (the call one whenever there is starter code or a `fn_name`).
TACO_QUESTION = "\nQUESTION:\n{prompt}"
TACO_STDIN = "{input}\nUse Standard Input format\nANSWER:\n"
TACO_CALL = "{input}\nUse Call-Based format\nANSWER:\n"

# Ours (Sky-T1 did not evaluate HumanEval): {prompt} is the HumanEval prompt, a signature and docstring.
HUMANEVAL = (
    "Complete the following Python function. Return the complete function, with the signature and any imports it "
    "needs, in a single ```python code block.\n\n```python\n{prompt}```"
)


def math_prompt(problem: str, boxed: str) -> str:
    """The user message of a math problem, with the `\\boxed{}` instruction `boxed` ("before"/"after") it."""
    return _by_placement(MATH_BOXED_BEFORE, MATH_BOXED_AFTER, boxed).format(problem=problem)


def choice_prompt(question: str, options: list[str], boxed: str) -> str:
    """The user message of a multiple-choice question: the question, then "A. ..." lines, then or after the
    instruction. (SkyThought wrote the options on one line as "A) x, B) y, ..."; one per line reads better.)"""
    letters = "ABCDEFGHIJ"[: len(options)]
    body = question + "\n" + "\n".join(f"{c}. {text}" for c, text in zip(letters, options))
    return _by_placement(GPQA_BOXED_BEFORE, GPQA_BOXED_AFTER, boxed).format(prompt=body)


def _by_placement(before: str, after: str, boxed: str) -> str:
    if boxed not in BOXED_PLACEMENTS:
        raise ValueError(f"PromptConfig.boxed must be one of {BOXED_PLACEMENTS}, got {boxed!r}")
    return before if boxed == "before" else after


def _sky_t1() -> str:
    from sky_data.prompts import SKY_T1_SYSTEM_PROMPT  # the data pipeline's, so train, data and eval share one

    return SKY_T1_SYSTEM_PROMPT


SYSTEM_PROMPTS = {"sky_t1": _sky_t1}  # named system prompts; any other string is used verbatim


def system_prompt(system: str | None) -> str | None:
    """The system message text for `PromptConfig.system`: None, a named prompt ("sky_t1"), or the string itself."""
    if system is None:
        return None
    if not isinstance(system, str):
        raise ValueError(f"PromptConfig.system must be None or a string, got {type(system).__name__}")
    named = SYSTEM_PROMPTS.get(system)
    return named() if named is not None else system


def chat(user: str, prompt: PromptConfig) -> list[dict[str, str]]:
    """The messages of one request: the system message chosen by `prompt.system` (if any), then `user`.

    Checks `prompt.boxed` here too, so that a code task given a bad placement fails as a math task would."""
    if prompt.boxed not in BOXED_PLACEMENTS:
        raise ValueError(f"PromptConfig.boxed must be one of {BOXED_PLACEMENTS}, got {prompt.boxed!r}")
    system = system_prompt(prompt.system)
    messages = [] if system is None else [{"role": "system", "content": system}]
    return messages + [{"role": "user", "content": user}]
