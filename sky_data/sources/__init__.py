"""Load a source's problems into one schema, `Problem`, keeping every record that could not be used and why.

    from sky_data.config import SourceCfg
    from sky_data.sources import load_source
    loaded = load_source(SourceCfg(name="numina", subsets=["amc_aime", "olympiads"], take=1000), seed=0)
    loaded.problems, loaded.rejected, loaded.counts()  # counts: {"numina/amc_aime": {"problems": n, ...}}

One module per source (local, numina, apps, taco, math, aime, still2), each two functions: `records(cfg)`
says where its rows come from (checking the config and opening the file before anything is read), and
`parse(row, cfg)` makes a `Problem` of one record, None when `subsets` leaves it out, a `BadRecord` when it is
malformed. A malformed record never stops the run: it becomes a `Rejected` (its exact place, and why), and one
warning sums them up. What stops it: a missing or unreadable file, a source with no records, or one where none
is usable (every record rejected, or none in `subsets`).

`limit` keeps the first N usable problems (reading stops there); then `take` draws N of them with `seed`,
kept in source order. `mix` loads each of `parts` (a SourceCfg as a dict, with its own limit/take) and
concatenates them in order. Exact duplicates are kept: deduplication is a stage of its own.
"""

from __future__ import annotations

import dataclasses
import random
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sky_data.schema import Problem
from sky_data.sources import aime, apps, local, math, numina, still2, taco
from sky_data.sources.rows import BadRecord, Row, Unreadable

if TYPE_CHECKING:
    from sky_data.config import SourceCfg

__all__ = ["SOURCES", "Loaded", "Rejected", "load_source"]

SOURCES: dict[str, ModuleType] = {"local": local, "numina": numina, "apps": apps, "taco": taco, "math": math,
                                  "aime": aime, "still2": still2}
SHOWN = 3  # rejected places named in the warning and in errors


@dataclass
class Rejected:
    where: str  # "path:line", "path row i", "<hub name> row i"
    source: str  # the Problem.source it would have had
    reason: str  # "field 'problem' is missing", "input_output is not valid JSON (...)", ...


@dataclass
class Loaded:
    problems: list[Problem] = field(default_factory=list)  # in source order, then a mix's parts in order
    rejected: list[Rejected] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per Problem.source: {"problems": n, "rejected": m}."""
        out: dict[str, dict[str, int]] = {}
        for p in self.problems:
            out.setdefault(p.source, {"problems": 0, "rejected": 0})["problems"] += 1
        for r in self.rejected:
            out.setdefault(r.source, {"problems": 0, "rejected": 0})["rejected"] += 1
        return dict(sorted(out.items()))


def load_source(cfg: SourceCfg, seed: int = 0, progress: bool = True) -> Loaded:
    """The problems of `cfg` (see the module docstring) and the records rejected on the way."""
    for key in ("limit", "take"):
        n = getattr(cfg, key)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ValueError(f"source.{key} must be a non-negative integer or null, got {n!r}")
    if cfg.name == "mix":
        loaded = _load_mix(cfg, seed, progress)
        if cfg.limit is not None:
            loaded.problems = loaded.problems[: cfg.limit]
    elif cfg.name in SOURCES:
        if cfg.parts:
            raise ValueError(f"source {cfg.name}: parts are for source=mix only")
        loaded = _load_one(SOURCES[cfg.name], cfg, progress)
    else:
        raise ValueError(f"source must be one of {', '.join([*SOURCES, 'mix'])}, got {cfg.name!r}")
    if cfg.take is not None:
        loaded.problems = draw(loaded.problems, cfg.take, seed, cfg.name)
    return loaded


def draw(problems: list[Problem], k: int, seed: int, label: str) -> list[Problem]:
    """k problems drawn with `seed` (the same seed, the same draw), in source order. More than there are: all."""
    if k >= len(problems):
        if k > len(problems):
            warnings.warn(f"source {label}: take={k} but only {len(problems)} problems; keeping all", stacklevel=3)
        return list(problems)
    chosen = sorted(random.Random(seed).sample(range(len(problems)), k))
    return [problems[i] for i in chosen]


def _load_one(module: ModuleType, cfg: SourceCfg, progress: bool) -> Loaded:
    if cfg.limit == 0:
        return Loaded()
    from tqdm.auto import tqdm

    recs = module.records(cfg)
    loaded, seen = Loaded(), 0
    bar = tqdm(recs.rows, total=recs.total, desc=f"loading {cfg.name}", unit="record", disable=not progress)
    try:
        for row in bar:
            seen += 1
            try:
                problem = _parse(module, row, cfg)
            except BadRecord as e:
                loaded.rejected.append(Rejected(row.where, e.source or recs.source, str(e)))
                continue
            if problem is not None:
                loaded.problems.append(problem)
                if cfg.limit is not None and len(loaded.problems) >= cfg.limit:
                    break
    finally:
        bar.close()
    if not loaded.problems:
        if loaded.rejected:
            raise ValueError(f"{recs.label}: every record was rejected ({len(loaded.rejected)}); "
                             f"first: {_places(loaded.rejected)}")
        if seen == 0:
            raise ValueError(f"{recs.label}: no records")
        raise ValueError(f"{recs.label}: none of its {seen} records is in subsets {list(cfg.subsets)}")
    if loaded.rejected:
        warnings.warn(f"{recs.label}: rejected {len(loaded.rejected)} of {seen} records; first: "
                      f"{_places(loaded.rejected)}", stacklevel=3)
    return loaded


def _parse(module: ModuleType, row: Row, cfg: SourceCfg) -> Problem | None:
    """`module.parse`, with whatever a malformed record can make it raise turned into a `BadRecord`."""
    rec = row.record
    if isinstance(rec, Unreadable):
        raise BadRecord(rec.reason)
    if not isinstance(rec, dict):
        raise BadRecord(f"expected an object, got {type(rec).__name__}")
    try:
        return module.parse(row, cfg)
    except BadRecord:
        raise
    except RecursionError:
        raise BadRecord("a value is nested too deeply") from None
    except (ValueError, TypeError) as e:  # e.g. Problem's own checks; a record, not the run, is at fault
        raise BadRecord(f"{type(e).__name__}: {e}"[:300]) from None


def _places(rejected: list[Rejected]) -> str:
    return "; ".join(f"{r.where}: {r.reason}" for r in rejected[:SHOWN]) + ("; ..." if len(rejected) > SHOWN else "")


def _load_mix(cfg: SourceCfg, seed: int, progress: bool) -> Loaded:
    if not cfg.parts:
        raise ValueError("source mix needs parts (a list of sources, each a dict of SourceCfg keys)")
    if cfg.path or cfg.subsets:
        raise ValueError("source mix: path and subsets belong in its parts")
    parts = [part_cfg(i, part) for i, part in enumerate(cfg.parts)]  # all checked before anything is read
    loaded = Loaded()
    for i, part in enumerate(parts):
        try:
            one = load_source(part, seed, progress)
        except (OSError, ValueError) as e:
            e.add_note(f"(in source mix, part {i}: {part.name})")
            raise
        loaded.problems += one.problems
        loaded.rejected += one.rejected
    return loaded


def part_cfg(i: int, part: Any) -> SourceCfg:
    """A mix part (a dict) merged onto the SourceCfg defaults; an unknown key or a bad value names the part."""
    from omegaconf import DictConfig, OmegaConf

    from sky_data.config import SourceCfg

    if isinstance(part, DictConfig):
        part = OmegaConf.to_container(part, resolve=True)
    if not isinstance(part, dict):
        raise ValueError(f"source mix: part {i} must be a mapping of SourceCfg keys, got {type(part).__name__}")
    valid = [f.name for f in dataclasses.fields(SourceCfg)]
    unknown = sorted(set(part) - set(valid))
    if unknown:
        raise ValueError(f"source mix: part {i} has unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"valid keys: {', '.join(valid)}")
    if part.get("name") == "mix" or part.get("parts"):
        raise ValueError(f"source mix: part {i} cannot itself be a mix")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SourceCfg), part))  # type: ignore[return-value]
    except ValueError as e:  # omegaconf's ValidationError: a value of the wrong type
        key = getattr(e, "full_key", None)
        raise ValueError(f"source mix: part {i}" + (f", key {key}" if key else "") + f": {str(e).splitlines()[0]}"
                         ) from None
