"""The chunked, labelled-positions-only cross-entropy against a plain full-logits computation."""

import pytest
import torch
import torch.nn.functional as F

from sky_train.data import IGNORE_INDEX
from sky_train.loss import chunked_cross_entropy_sum


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_chunked_sum_and_gradients_equal_full_logits(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    head = torch.nn.Linear(16, 50, bias=False)
    labels = torch.randint(0, 50, (2, 9))
    labels[0, :4] = IGNORE_INDEX
    labels[1, -1] = IGNORE_INDEX

    ref = F.cross_entropy(head(hidden).reshape(-1, 50), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    ref.backward()
    ref_grads = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None

    got = chunked_cross_entropy_sum(hidden, head, labels, chunk)
    got.backward()
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(hidden.grad, ref_grads[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(head.weight.grad, ref_grads[1], rtol=1e-6, atol=1e-7)
    # Hand check: positions without a label get no gradient at all.
    assert hidden.grad[0, :4].abs().max() == 0


def test_no_labelled_token_gives_zero():
    hidden = torch.randn(1, 4, 8)
    labels = torch.full((1, 4), IGNORE_INDEX)
    assert chunked_cross_entropy_sum(hidden, torch.nn.Linear(8, 5), labels, 2).item() == 0.0
