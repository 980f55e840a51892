"""The small SFT set and tokenizer that ship with sky_train, so `python -m sky_train` runs with no download.

`sky_t1_tiny.jsonl` holds ~400 Sky-T1-style ShareGPT records (system prompt, user problem, assistant
trace in <|begin_of_thought|>/<|begin_of_solution|> form) whose answers are computed, not sampled.
`tokenizer/` is a 1024-token byte-level BPE built like Qwen2's, with Qwen2.5-Instruct's special tokens
and chat template. Both are written by the generator; rebuild them with

    python -m sky_train.embedded.generate            # --n 400 --out-dir sky_train/embedded
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for the annotation: importing transformers costs seconds, and most users of this module
    # only want the paths.
    from transformers import PreTrainedTokenizerFast

EMBEDDED_DIR: Path = Path(__file__).resolve().parent
EMBEDDED_DATA: Path = EMBEDDED_DIR / "sky_t1_tiny.jsonl"
EMBEDDED_TOKENIZER: Path = EMBEDDED_DIR / "tokenizer"

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


def load_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Load the shipped 1024-token tokenizer (eos `<|im_end|>`, pad `<|endoftext|>`, Qwen2.5 chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(EMBEDDED_TOKENIZER))


__all__ = [
    "EMBEDDED_DATA",
    "EMBEDDED_DIR",
    "EMBEDDED_TOKENIZER",
    "SKY_T1_SYSTEM_PROMPT",
    "load_tiny_tokenizer",
]
