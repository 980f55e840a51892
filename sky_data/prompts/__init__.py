"""The prompts of the data pipeline: what the teacher is asked, and the rewriter's and rater's instructions.

The rewrite and difficulty prompts are text files in this directory, versioned by name (`rewrite_v1.txt`):
change one by adding `rewrite_v2.txt` and setting `rewrite.prompt=v2`, never by editing a file that finished
runs used. Their text is part of every request's content, so the request cache never serves an answer that
was made with another prompt.

The teacher's user messages are those of the Sky-T1 data, so that a model trained on the SFT set sees the
prompts sky_eval asks with: math and science "Return your final response within \\boxed{}. {problem}"; code
the APPS/LiveCodeBench instructions of SkyThought (stdin, or call-based with the starter code after them).
"""

from __future__ import annotations

import re
from pathlib import Path

from sky_data.schema import Problem

__all__ = ["CODE_CALL", "CODE_STDIN", "MATH_USER", "SKY_T1_SYSTEM_PROMPT", "load_prompt", "render", "system_prompt",
           "user_prompt"]

PROMPT_DIR = Path(__file__).resolve().parent

MATH_USER = "Return your final response within \\boxed{{}}. {problem}"
CODE_STDIN = ("Generate an executable Python function generated from the given prompt. The function should take "
              "stdin as input and print the output. Simply call the function after the definition. {problem}")
CODE_CALL = ("Generate an executable Python function generated from the given prompt. Return the function body "
             "without invoking it at the final solution. {problem}")

# The system prompt of the Sky-T1 SFT data (NovaSky-AI Sky-T1_data_17k, also used for Bespoke-Stratos),
# verbatim, typo "analisying" included. The '\n\n' in it is the four characters backslash-n-backslash-n,
# exactly as in the published records, not two newlines.
SKY_T1_SYSTEM_PROMPT: str = (
    "Your role as an assistant involves thoroughly exploring questions through a systematic long "
    "thinking process before providing the final precise and accurate solutions. This requires "
    "engaging in a comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, "
    "backtracing, and iteration to develop well-considered thinking process. Please structure your "
    "response into two main sections: Thought and Solution. In the Thought section, detail your "
    "reasoning process using the specified format: <|begin_of_thought|> {thought with steps separated "
    "with '\\n\\n'} <|end_of_thought|> Each step should include detailed considerations such as "
    "analisying questions, summarizing relevant findings, brainstorming new ideas, verifying the "
    "accuracy of the current steps, refining any errors, and revisiting previous steps. In the Solution "
    "section, based on various attempts, explorations, and reflections from the Thought section, "
    "systematically present the final solution that you deem correct. The solution should remain a "
    "logical, accurate, concise expression style and detail necessary step needed to reach the "
    "conclusion, formatted as follows: <|begin_of_solution|> {final formatted, precise, and clear "
    "solution} <|end_of_solution|> Now, try to solve the following question through the above "
    "guidelines:"
)

_SLOT = re.compile(r"\{(problem|trace)\}")


def user_prompt(problem: Problem) -> str:
    """The user turn of `problem`, as the teacher is asked it and as the SFT record keeps it."""
    if problem.domain != "code":
        return MATH_USER.format(problem=problem.question)
    call_based = bool(problem.starter_code) or bool((problem.tests or {}).get("fn_name"))
    text = (CODE_CALL if call_based else CODE_STDIN).format(problem=problem.question)
    return f"{text}\n{problem.starter_code}" if problem.starter_code else text


def system_prompt(name: str | None) -> str | None:
    """None, the Sky-T1 system prompt for "sky_t1", or the string itself."""
    if name == "sky_t1":
        return SKY_T1_SYSTEM_PROMPT
    return name


def load_prompt(kind: str, version: str) -> str:
    """The text of `<kind>_<version>.txt` (kind: rewrite, difficulty)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", version):
        raise ValueError(f"{kind} prompt version {version!r}: letters, digits, '_', '.', '-' only")
    path = PROMPT_DIR / f"{kind}_{version}.txt"
    if not path.is_file():
        have = sorted(p.stem.split("_", 1)[1] for p in PROMPT_DIR.glob(f"{kind}_*.txt"))
        raise FileNotFoundError(f"no {kind} prompt {version!r} ({path}); versions: {', '.join(have)}")
    return path.read_text(encoding="utf-8")


def render(template: str, **slots: str) -> str:
    """Fill `{problem}` and `{trace}` in one pass: braces anywhere else (LaTeX, `\\boxed{...}`) are left alone,
    and a problem that itself contains the text "{trace}" is not filled a second time."""
    return _SLOT.sub(lambda m: slots[m.group(1)] if m.group(1) in slots else m.group(0), template)
