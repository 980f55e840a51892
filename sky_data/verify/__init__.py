"""Verifiers shared by data generation (rejection sampling) and evaluation (scoring): one judge for both.

`math` checks a final answer against a reference answer; `code` judges a program on its tests, running it
through `sandbox`.
"""

from sky_data.verify.code import (
    TestOutcome,
    Verdict,
    check_code,
    check_code_batch,
    check_program,
    compare_output,
    decode_lcb_private_tests,
    extract_code,
    verdict_reason,
)
from sky_data.verify.math import (
    MathVerdict,
    check_math,
    extract_answer,
    extract_choice,
    math_equal,
)
from sky_data.verify.sandbox import (
    SandboxRun,
    SandboxUnavailable,
    isolation,
    run_sandboxed,
)

__all__ = [
    "MathVerdict",
    "SandboxRun",
    "SandboxUnavailable",
    "TestOutcome",
    "Verdict",
    "check_code",
    "check_code_batch",
    "check_math",
    "check_program",
    "compare_output",
    "decode_lcb_private_tests",
    "extract_answer",
    "extract_choice",
    "extract_code",
    "isolation",
    "math_equal",
    "run_sandboxed",
    "verdict_reason",
]
