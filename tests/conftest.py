"""Shared fixtures: the embedded tiny tokenizer, small record files written by the tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def tokenizer():
    from sky_train.embedded import load_tiny_tokenizer

    return load_tiny_tokenizer()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for `python -m sky_train` subprocesses: this checkout first on the path, so they run
    the code under test even when the installed (editable) sky_train points at another clone."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def sky_record(question: str, answer: str, system: str | None = "Think step by step.") -> dict:
    rec = {"conversations": [{"from": "user", "value": question}, {"from": "assistant", "value": answer}]}
    if system is not None:
        rec["system"] = system
    return rec


def pytest_collection_modifyitems(config, items):
    """GPU tests run only where CUDA is present (a lent GPU machine); elsewhere they skip, saying why."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on a GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
