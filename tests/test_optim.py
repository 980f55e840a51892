"""Learning-rate schedule and parameter groups, against hand-computed values."""

import math

import pytest
import torch

from sky_train.optim import lr_at, param_groups, warmup_steps


def test_warmup_is_linear_and_reaches_the_peak_on_its_last_step():
    # 20 steps, 10% warmup -> 2 warmup steps: lr/2, lr; then cosine over the 18 remaining steps.
    assert warmup_steps(20, 0.1) == 2
    assert lr_at(0, 20, 1.0, 0.1) == pytest.approx(0.5)
    assert lr_at(1, 20, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(2, 20, 1.0, 0.1) == pytest.approx(1.0)  # first decay step
    assert lr_at(19, 20, 1.0, 0.1) == pytest.approx(0.0, abs=1e-12)  # last step reaches the floor
    # Halfway through the decay (step 2 + 8.5 of 17 intervals) the cosine is at half.
    assert lr_at(2 + 17 // 2, 20, 1.0, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 17)))


def test_recipe_schedule_513_steps():
    # Sky-T1: 3 epochs x 171 steps, 10% warmup -> 52 warmup steps at lr 1e-5.
    assert warmup_steps(513, 0.1) == 52
    assert lr_at(0, 513, 1e-5, 0.1) == pytest.approx(1e-5 / 52)
    assert lr_at(51, 513, 1e-5, 0.1) == pytest.approx(1e-5)
    assert lr_at(512, 513, 1e-5, 0.1, min_lr_ratio=0.1) == pytest.approx(1e-6)


def test_norms_and_biases_get_no_weight_decay():
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(m, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(no_decay["params"]) == 3  # linear bias, norm weight, norm bias
