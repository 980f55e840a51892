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

# The system prompt of the Sky-T1 SFT data, verbatim: it lives with the data pipeline's prompts.
from sky_data.prompts import SKY_T1_SYSTEM_PROMPT

if TYPE_CHECKING:
    # Only for the annotation: importing transformers costs seconds, and most users of this module
    # only want the paths.
    from transformers import PreTrainedTokenizerFast

EMBEDDED_DIR: Path = Path(__file__).resolve().parent
EMBEDDED_DATA: Path = EMBEDDED_DIR / "sky_t1_tiny.jsonl"
EMBEDDED_TOKENIZER: Path = EMBEDDED_DIR / "tokenizer"



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
