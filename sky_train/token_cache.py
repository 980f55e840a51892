"""Tokenize a data set once, keep it on disk as flat token arrays, and memory-map it on every rank.

Without it every rank tokenized the whole set at every start (~90 s and several GB of Python lists per rank
for Sky-T1's 17K long records). Now rank 0 tokenizes once into `<cache_dir>/<key>/`, and every rank
memory-maps the arrays (the ranks of a node share the pages through the OS page cache). A resumed run and
every point of a sweep (`runs/x_sweep/<point>`, cache in `runs/x_sweep/.token_cache`) find the entry again.

key = sha256 of the data (a file's bytes, a `save_to_disk` folder's files, or `hf:<name>` and the split) and
its resolved path (samples name their source), the tokenizer (its serialized tokenizer.json or vocabulary,
special tokens), the chat template, max_seq_len, assistant_end, default_system, max_samples, the
transformers/tokenizers versions and FORMAT_VERSION. An entry holds

    input_ids.npy     int32 (N,)    every kept sample's tokens, back to back
    labels.npy        int32 (N,)    their shifted labels (IGNORE_INDEX where no loss)
    offsets.npy       int64 (S+1,)  sample i is [offsets[i], offsets[i+1])
    label_counts.npy  int64 (S,)    label tokens per sample
    truncated.npy     bool  (S,)    cut at max_seq_len
    sources.json      per sample, "file.jsonl:12" (messages, logs)
    report.json       the DataReport;   meta.json: the format version, the key and what went into it

It is written into a temporary folder and renamed into place, so a torn entry is never read; one that no
longer opens (a truncated or missing file) is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sky_train.config import DataConfig
from sky_train.data import DataError, DataReport, Sample, load_conversations, tokenize_conversation

FORMAT_VERSION = 1
_ARRAYS = ("input_ids", "labels", "offsets", "label_counts", "truncated")


def data_fingerprint(path: str | Path | None, split: str = "train") -> str:
    """sha256 hex of the data: a file's bytes (= `sha256sum FILE`), a `save_to_disk` folder's files (relative
    names, sizes, bytes) and the split, or an `hf:<name>` hub name and the split. Read in 1 MiB chunks."""
    if path is None:
        from sky_train.embedded import EMBEDDED_DATA

        path = EMBEDDED_DATA
    spec = str(path)
    h = hashlib.sha256()
    if spec.startswith("hf:"):
        h.update(json.dumps({"hf": spec[3:], "split": split}).encode())
    elif Path(spec).is_dir():
        root = Path(spec)
        h.update(f"split={split}\0".encode())
        # `datasets` may write cache-*.arrow files (from .map) next to the saved data: not part of it.
        for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("cache-")):
            h.update(f"{f.relative_to(root).as_posix()}\0{f.stat().st_size}\0".encode())
            _hash_file(h, f)
    elif Path(spec).is_file():
        _hash_file(h, Path(spec))
    else:
        raise DataError(f"{spec}: no such file")
    return h.hexdigest()


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 hex of what decides the token ids: the serialized tokenizer (tokenizer.json for a fast one, the
    vocabulary for a slow one), its added and special tokens, and its class. The chat template is keyed apart."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    added = {str(k): str(v) for k, v in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    special = {k: str(v) for k, v in tokenizer.special_tokens_map.items()}
    h.update(json.dumps([added, special], sort_keys=True).encode())
    return h.hexdigest()


def cache_key(data: DataConfig, tokenizer: Any) -> tuple[str, dict[str, Any]]:
    """The entry's name (sha256 hex) and the description it hashes (kept in the entry's meta.json)."""
    path = data.path
    if path is not None and not str(path).startswith("hf:"):
        path = str(Path(path).resolve())
    meta = {
        "format": FORMAT_VERSION,
        "data": data_fingerprint(data.path, data.split),
        "path": path,
        "split": data.split,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "chat_template": getattr(tokenizer, "chat_template", None),
        "max_seq_len": data.max_seq_len,
        "assistant_end": data.assistant_end,
        "default_system": data.default_system,
        "max_samples": data.max_samples,
        "versions": {name: _version(name) for name in ("transformers", "tokenizers")},
    }
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest(), meta


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def load_samples(data: DataConfig, tokenizer: Any, cache_dir: str | Path, progress: bool = True
                 ) -> tuple[list[Sample], DataReport]:
    """The tokenized samples of `data`, from the cache entry, which rank 0 builds first when it is missing.

    Collective when torch.distributed is initialised: every rank must call it. Rank 0 alone reads the data and
    tokenizes; the other ranks wait in one broadcast of a CPU tensor (gloo, also under `cuda:nccl,cpu:gloo`:
    no NCCL watchdog runs while rank 0 works; the group's timeout, 30 min by default, bounds the build), which
    carries the entry's key, or rank 0's failure so that no rank hangs on a bad record.
    """
    cache_dir = Path(cache_dir)
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank = dist.get_rank() if distributed else 0
    status = torch.zeros(33, dtype=torch.uint8)  # [failed, the key's 32 bytes]
    error: Exception | None = None
    if rank == 0:
        try:
            key, meta = cache_key(data, tokenizer)
            result = _open_or_build(cache_dir / key, meta, data, tokenizer, progress)
            status[1:] = torch.tensor(list(bytes.fromhex(key)), dtype=torch.uint8)
        except Exception as err:  # noqa: BLE001 -- re-raised below, after the other ranks were told
            error = err
            status[0] = 1
    if distributed:
        dist.broadcast(status, src=0)
    if error is not None:
        raise error
    if status[0]:
        raise RuntimeError("rank 0 failed to read or tokenize the data (its error is in rank 0's output)")
    if rank == 0:
        return result
    entry = cache_dir / bytes(status[1:].tolist()).hex()
    try:
        return open_entry(entry)
    except Exception as err:
        raise RuntimeError(
            f"rank {rank} cannot open the token cache entry {entry} that rank 0 wrote ({err}); data.cache_dir "
            "must be a folder that every node sees (a shared file system)"
        ) from err


def _open_or_build(entry: Path, meta: dict[str, Any], data: DataConfig, tokenizer: Any, progress: bool
                   ) -> tuple[list[Sample], DataReport]:
    if entry.exists():
        try:
            samples, report = open_entry(entry)
            print(f"[sky_train] token cache hit: {entry} ({report.samples} samples, {report.tokens} tokens)",
                  flush=True)
            return samples, report
        except Exception as err:  # noqa: BLE001 -- any unreadable entry is rebuilt
            warnings.warn(f"token cache entry {entry} is unreadable ({err}); rebuilding it", stacklevel=3)
    t0 = time.perf_counter()
    build_entry(entry, meta, data, tokenizer, progress)
    samples, report = open_entry(entry)
    print(f"[sky_train] token cache miss: tokenized {report.records} records in {time.perf_counter() - t0:.1f} s "
          f"into {entry}", flush=True)
    return samples, report


def build_entry(entry: Path, meta: dict[str, Any], data: DataConfig, tokenizer: Any, progress: bool = False) -> None:
    """Read and tokenize every record into a temporary folder beside `entry`, then rename it into place.

    Tokens stream to disk sample by sample: the build holds the records' text, never the token lists of the
    whole set. Samples with no trained token left after truncation are dropped (counted), as build_samples does.
    """
    from tqdm import tqdm

    conversations = load_conversations(data.path, data.split, data.default_system, data.max_samples)
    entry.parent.mkdir(parents=True, exist_ok=True)
    for stale in entry.parent.glob(f".{entry.name}.tmp-*"):  # left by a killed build (a day: surely not running)
        if time.time() - stale.stat().st_mtime > 86400:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = entry.parent / f".{entry.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        offsets, counts, truncated, sources, n_truncated, dropped = [0], [], [], [], 0, 0
        with open(tmp / "input_ids.bin", "wb") as f_ids, open(tmp / "labels.bin", "wb") as f_labels:
            for conv in tqdm(conversations, desc="tokenize", disable=not progress, dynamic_ncols=True):
                s = tokenize_conversation(conv, tokenizer, data.max_seq_len, data.assistant_end)
                n_truncated += s.truncated
                if s.num_label_tokens == 0:
                    dropped += 1
                    continue
                np.asarray(s.input_ids, dtype=np.int32).tofile(f_ids)
                np.asarray(s.labels, dtype=np.int32).tofile(f_labels)
                offsets.append(offsets[-1] + len(s))
                counts.append(s.num_label_tokens)
                truncated.append(s.truncated)
                sources.append(s.source)
        if not sources:
            raise DataError(
                f"no sample has an assistant token within data.max_seq_len={data.max_seq_len} "
                f"({len(conversations)} records, first: {conversations[0].source})"
            )
        for name in ("input_ids", "labels"):
            _bin_to_npy(tmp / f"{name}.bin", tmp / f"{name}.npy", offsets[-1])
        np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
        np.save(tmp / "label_counts.npy", np.asarray(counts, dtype=np.int64))
        np.save(tmp / "truncated.npy", np.asarray(truncated, dtype=bool))
        report = DataReport(records=len(conversations), samples=len(sources), truncated=n_truncated,
                            dropped=dropped, tokens=offsets[-1], label_tokens=int(sum(counts)))
        (tmp / "sources.json").write_text(json.dumps(sources))
        (tmp / "report.json").write_text(json.dumps(asdict(report)))
        (tmp / "meta.json").write_text(json.dumps({**meta, "key": entry.name}, indent=1))
        for f in tmp.iterdir():  # on disk before the rename publishes them
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _publish(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _bin_to_npy(src: Path, dst: Path, n: int) -> None:
    """Raw int32 tokens -> a .npy of shape (n,), copied in chunks (no whole-set copy in memory)."""
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=np.int32, shape=(n,))
    raw = np.memmap(src, dtype=np.int32, mode="r", shape=(n,))
    step = 1 << 24
    for a in range(0, n, step):
        out[a : a + step] = raw[a : a + step]
    out.flush()
    del out, raw
    src.unlink()


def _publish(tmp: Path, entry: Path) -> None:
    if entry.exists():  # an unreadable entry being replaced: move it aside first (a rename is atomic)
        old = entry.parent / f".{entry.name}.old-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(entry, old)
        except FileNotFoundError:
            pass
        else:
            shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(tmp, entry)
    except OSError:
        if not entry.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another job published the same entry meanwhile: keep theirs


def open_entry(entry: Path) -> tuple[list[Sample], DataReport]:
    """Memory-map an entry's arrays; every Sample is a pair of views into them. Raises on an inconsistent entry."""
    meta = json.loads((entry / "meta.json").read_text())
    if meta.get("format") != FORMAT_VERSION or meta.get("key") != entry.name:
        raise ValueError(f"meta.json has format {meta.get('format')} and key {meta.get('key')}")
    ids = np.load(entry / "input_ids.npy", mmap_mode="r")
    labels = np.load(entry / "labels.npy", mmap_mode="r")
    offsets = np.load(entry / "offsets.npy").tolist()
    counts = np.load(entry / "label_counts.npy").tolist()
    truncated = np.load(entry / "truncated.npy").tolist()
    sources = json.loads((entry / "sources.json").read_text())
    report = DataReport(**json.loads((entry / "report.json").read_text()))
    n = len(sources)
    if not (
        ids.dtype == labels.dtype == np.int32 and ids.shape == labels.shape == (offsets[-1],)
        and len(offsets) == n + 1 and offsets[0] == 0 and len(counts) == len(truncated) == n == report.samples
        and report.tokens == offsets[-1] and report.label_tokens == sum(counts)
        and all(a < b for a, b in zip(offsets, offsets[1:]))
    ):
        raise ValueError("its arrays, sources and report disagree")
    samples = [
        Sample(ids[a:b], labels[a:b], src, tr, c)
        for a, b, src, tr, c in zip(offsets, offsets[1:], sources, truncated, counts)
    ]
    return samples, report
