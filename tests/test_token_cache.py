"""The token cache: tokenized once, memory-mapped after, keyed by what decides the tokens, never a torn entry.

The reference for the cached samples is data.build_samples (tokenizing in memory, no cache)."""

import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import sky_record, subprocess_env, write_jsonl

import sky_train.token_cache as tc
from sky_train.config import DataConfig
from sky_train.data import DataError, build_samples, load_conversations


def _records(n, extra=""):
    return [sky_record(f"What is {i} + {i}?{extra}", f"<|begin_of_thought|> {i} plus {i} <|end_of_thought|> {2 * i}")
            for i in range(n)]


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "d.jsonl", _records(6))


@pytest.fixture
def tokenize_calls(monkeypatch):
    """Counts tokenize_conversation calls made by the cache builder."""
    calls = []
    original = tc.tokenize_conversation

    def spy(conv, *args, **kwargs):
        calls.append(conv.source)
        return original(conv, *args, **kwargs)

    monkeypatch.setattr(tc, "tokenize_conversation", spy)
    return calls


def _as_lists(samples):
    return [(list(s.input_ids), list(s.labels), s.source, s.truncated, s.num_label_tokens) for s in samples]


def _entries(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir())


def test_second_load_does_not_tokenize_and_gives_identical_samples(tmp_path, data_file, tokenizer, tokenize_calls,
                                                                   capsys):
    cfg = DataConfig(path=str(data_file), max_seq_len=40)  # some records cut at 40 tokens
    first, report1 = tc.load_samples(cfg, tokenizer, tmp_path / "cache")
    assert len(tokenize_calls) == 6 and "token cache miss" in capsys.readouterr().out
    second, report2 = tc.load_samples(cfg, tokenizer, tmp_path / "cache")
    assert len(tokenize_calls) == 6  # not one more
    out = capsys.readouterr().out
    assert f"token cache hit: {tmp_path / 'cache'}" in out and out.count("\n") == 1
    ref, ref_report = build_samples(load_conversations(data_file), tokenizer, 40)
    assert _as_lists(second) == _as_lists(first) == _as_lists(ref)
    assert report2 == report1 == ref_report and ref_report.truncated > 0
    # Views into one memory-mapped int32 array per field, not lists.
    s = second[1]
    assert isinstance(s.input_ids, np.memmap) and s.input_ids.dtype == np.int32 and s.labels.dtype == np.int32
    assert len(s) == len(ref[1]) and s.source == f"{data_file}:2"
    assert _entries(tmp_path / "cache") == [tc.cache_key(cfg, tokenizer)[0]]


def test_the_data_file_cutoff_template_or_end_token_make_a_new_entry(tmp_path, data_file, tokenizer):
    from sky_train.embedded import load_tiny_tokenizer

    cache = tmp_path / "cache"
    cfg = DataConfig(path=str(data_file), max_seq_len=64)
    tc.load_samples(cfg, tokenizer, cache)
    assert len(_entries(cache)) == 1
    tc.load_samples(DataConfig(path=str(data_file), max_seq_len=32), tokenizer, cache)
    assert len(_entries(cache)) == 2
    tc.load_samples(DataConfig(path=str(data_file), max_seq_len=64, assistant_end="<|endoftext|>"), tokenizer, cache)
    assert len(_entries(cache)) == 3
    other_template = load_tiny_tokenizer()
    other_template.chat_template += "{# v2 #}"  # renders the same text, but is another template
    tc.load_samples(cfg, other_template, cache)
    assert len(_entries(cache)) == 4
    write_jsonl(data_file, _records(6, extra=" "))  # same path, other content
    samples, _ = tc.load_samples(cfg, tokenizer, cache)
    assert len(_entries(cache)) == 5
    assert tokenizer.decode(samples[0].input_ids).count("What is 0 + 0? ") == 1
    # A setting seen before is found again, not rebuilt.
    tc.load_samples(DataConfig(path=str(data_file), max_seq_len=64, assistant_end="<|endoftext|>"), tokenizer, cache)
    assert len(_entries(cache)) == 6  # (the new content with that end token is new)
    tc.load_samples(DataConfig(path=str(data_file), max_seq_len=64, assistant_end="<|endoftext|>"), tokenizer, cache)
    assert len(_entries(cache)) == 6


def test_a_bad_record_fails_with_file_and_line_while_another_file_is_cached(tmp_path, data_file, tokenizer):
    cache = tmp_path / "cache"
    tc.load_samples(DataConfig(path=str(data_file), max_seq_len=64), tokenizer, cache)
    bad = write_jsonl(tmp_path / "bad.jsonl", [*_records(2), {"conversations": [{"from": "user", "value": "q"}]}])
    with pytest.raises(DataError, match=rf"{bad}:3: no assistant turn"):
        tc.load_samples(DataConfig(path=str(bad), max_seq_len=64), tokenizer, cache)
    assert len(_entries(cache)) == 1  # nothing half-written left behind


def test_a_failed_build_leaves_no_entry_and_no_temporary_folder(tmp_path, data_file, tokenizer, monkeypatch):
    cache = tmp_path / "cache"
    original, calls = tc.tokenize_conversation, []

    def dies_on_the_fourth(conv, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # a kill in the middle of the build
        return original(conv, *args, **kwargs)

    monkeypatch.setattr(tc, "tokenize_conversation", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        tc.load_samples(DataConfig(path=str(data_file), max_seq_len=64), tokenizer, cache)
    assert _entries(cache) == []


def test_leftovers_of_a_killed_build_are_ignored_and_removed_after_a_day(tmp_path, data_file, tokenizer):
    import os
    import time

    cache = tmp_path / "cache"
    cfg = DataConfig(path=str(data_file), max_seq_len=64)
    key = tc.cache_key(cfg, tokenizer)[0]
    old, fresh = cache / f".{key}.tmp-1-aaaa", cache / f".{key}.tmp-2-bbbb"  # as a SIGKILL leaves them
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / "input_ids.bin").write_bytes(b"\0" * 8)
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    samples, _ = tc.load_samples(cfg, tokenizer, cache)
    assert len(samples) == 6
    assert _entries(cache) == sorted([key, fresh.name])  # the old one removed, a possibly running one kept


def test_a_corrupted_entry_is_rebuilt_with_a_warning(tmp_path, data_file, tokenizer, tokenize_calls):
    cache = tmp_path / "cache"
    cfg = DataConfig(path=str(data_file), max_seq_len=64)
    good, _ = tc.load_samples(cfg, tokenizer, cache)
    good = _as_lists(good)
    (entry,) = cache.iterdir()
    ids = entry / "input_ids.npy"
    ids.write_bytes(ids.read_bytes()[:-10])  # a truncated array
    with pytest.warns(UserWarning, match="is unreadable .* rebuilding it"):
        again, _ = tc.load_samples(cfg, tokenizer, cache)
    assert _as_lists(again) == good and len(tokenize_calls) == 12
    (entry / "sources.json").unlink()  # a missing file
    with pytest.warns(UserWarning, match="rebuilding"):
        again, _ = tc.load_samples(cfg, tokenizer, cache)
    assert _as_lists(again) == good and _entries(cache) == [entry.name]


def test_data_fingerprint_is_the_content_hash(tmp_path, data_file):
    assert tc.data_fingerprint(data_file) == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert tc.data_fingerprint(None) == hashlib.sha256(tc_embedded_bytes()).hexdigest()
    moved = tmp_path / "moved.jsonl"
    moved.write_bytes(data_file.read_bytes())
    assert tc.data_fingerprint(moved) == tc.data_fingerprint(data_file)
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "data-00000.arrow").write_bytes(b"abc")
    before = tc.data_fingerprint(folder)
    (folder / "data-00000.arrow").write_bytes(b"abd")
    assert tc.data_fingerprint(folder) != before
    assert tc.data_fingerprint(folder, "test") != tc.data_fingerprint(folder, "train")
    assert tc.data_fingerprint("hf:org/set", "train") != tc.data_fingerprint("hf:org/set", "test")
    with pytest.raises(DataError, match="no such file"):
        tc.data_fingerprint(tmp_path / "missing.jsonl")


def tc_embedded_bytes():
    from sky_train.embedded import EMBEDDED_DATA

    return EMBEDDED_DATA.read_bytes()


_WORKER = """
import hashlib, json, sys
from pathlib import Path
import numpy as np
import torch.distributed as dist
import sky_train.token_cache as tc
from sky_train.config import DataConfig
from sky_train.embedded import load_tiny_tokenizer

dist.init_process_group("gloo")
rank = dist.get_rank()
calls = []
original = tc.tokenize_conversation
tc.tokenize_conversation = lambda *a, **k: calls.append(1) or original(*a, **k)
data, cache, out = sys.argv[1:4]
samples, report = tc.load_samples(DataConfig(path=data, max_seq_len=64), load_tiny_tokenizer(), cache,
                                  progress=rank == 0)
Path(out, f"rank{rank}.json").write_text(json.dumps({
    "tokenized": len(calls),
    "ids": hashlib.sha256(np.concatenate([s.input_ids for s in samples]).tobytes()).hexdigest(),
    "labels": hashlib.sha256(np.concatenate([s.labels for s in samples]).tobytes()).hexdigest(),
    "sources": [s.source for s in samples], "report": report.samples,
}))
dist.destroy_process_group()
"""


def _torchrun(tmp_path, data):
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(_WORKER))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
           str(data), str(tmp_path / "cache"), str(tmp_path)]
    return subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_two_ranks_only_rank_0_tokenizes_and_both_map_the_same_arrays(tmp_path, data_file, tokenizer):
    proc = _torchrun(tmp_path, data_file)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["tokenized"], r1["tokenized"]) == (6, 0)
    assert {k: v for k, v in r0.items() if k != "tokenized"} == {k: v for k, v in r1.items() if k != "tokenized"}
    ref, _ = build_samples(load_conversations(data_file), tokenizer, 64)
    ref_ids = np.concatenate([np.asarray(s.input_ids, np.int32) for s in ref])
    assert r0["ids"] == hashlib.sha256(ref_ids.tobytes()).hexdigest()
    assert "token cache miss" in proc.stdout and proc.stdout.count("token cache") == 1  # one line, rank 0's
    # A bad record: rank 0 names it, rank 1 stops too (no hang), nothing is cached.
    bad = write_jsonl(tmp_path / "bad.jsonl", [*_records(2), {"messages": [{"role": "narrator", "content": "x"}]}])
    proc = _torchrun(tmp_path, bad)
    assert proc.returncode != 0
    assert f"{bad}:3: turn 0 has unknown role" in proc.stderr
    assert "rank 0 failed to read or tokenize the data" in proc.stderr
    assert len(_entries(tmp_path / "cache")) == 1
