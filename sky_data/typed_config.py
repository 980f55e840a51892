"""A Hydra config (or a nested dict) onto a typed dataclass schema: what every entry point's `to_config` ends with.

    cfg = merge_onto(DataConfig, composed, {"teacher.n": 4})   # unknown keys, wrong types: an error, here

sky_train, sky_data and sky_eval each compose their own defaults (their own top config and groups) and then
call this, so the three read a config the same way: interpolations resolved, Hydra's own sections dropped,
the schema deciding which keys exist and their types, dotted overrides applied last.
"""

from __future__ import annotations

from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

__all__ = ["merge_onto"]

T = TypeVar("T")


def merge_onto(schema: type[T], cfg: DictConfig | T, overrides: dict[str, Any] | None = None,
               drop: tuple[str, ...] = ("hydra", "defaults")) -> T:
    """`cfg` (a DictConfig, or an instance of `schema`) merged onto `schema`, with `overrides` (dotted keys)."""
    if isinstance(cfg, schema):
        cfg = OmegaConf.structured(cfg)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key in drop:
        if key in cfg:
            del cfg[key]
    merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    for dotted, value in (overrides or {}).items():
        OmegaConf.update(merged, dotted, value, merge=True)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]
