"""The main job, exactly as the README runs it: `python -m sky_train` with no arguments."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import subprocess_env


@pytest.mark.slow
def test_main_job_trains_the_embedded_default_and_exports_a_loadable_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sky_train"], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = tmp_path / "runs" / "default"
    assert "[sky_train] done:" in proc.stdout and str(run / "hf") in proc.stdout

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    assert len(rows) == summary["steps"] == 75  # 400 samples / 16 per step = 25 steps x 3 epochs
    assert summary["first_loss"] > 6.5  # ~ln(1024) at random init
    assert summary["last_loss"] < 3.0  # it learned the format and the arithmetic's shape

    # The export loads with plain transformers, with the chat template, and scores the data as trained.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sky_train.data import build_samples, load_conversations

    model = AutoModelForCausalLM.from_pretrained(run / "hf")
    tok = AutoTokenizer.from_pretrained(run / "hf")
    samples, _ = build_samples(load_conversations(None, max_samples=16), tok, 2048)
    with torch.no_grad():
        ce = [torch.nn.functional.cross_entropy(model(input_ids=torch.tensor([s.input_ids])).logits[0],
                                                torch.tensor(s.labels), ignore_index=-100).item() for s in samples]
    assert sum(ce) / len(ce) < 3.0
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
