"""sky_train: full-parameter SFT of long-reasoning models with a hand-written FSDP2 loop.

    from sky_train import train, to_config
    result = train(to_config({"data": {"path": "my_sft.jsonl"}, "model": {"name_or_path": "/models/qwen"}}))

The pieces are importable on their own: `sky_train.packing` (best-fit packing), `sky_train.loss`
(token-sum cross-entropy), `sky_train.parallel` (activation checkpointing + fully_shard),
`sky_train.data` (records -> chat-rendered, assistant-only labels).
"""

from sky_train.config import SkyTrainConfig, to_config
from sky_train.train import TrainResult, train

__all__ = ["SkyTrainConfig", "TrainResult", "to_config", "train"]
