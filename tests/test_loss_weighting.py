"""train.loss_weighting=sample (issue 8, item 11): every sample weighs the same, as in the original recipe's
HF Trainer run (micro-batch 1): the loss is the mean over the batch's samples of each sample's token-mean CE.
Checked against plain transformers trained sample by sample (test_train.reference_run), and by hand."""

import pytest
import torch
from test_train import reference_run, tiny_cfg

from sky_train import train
from sky_train.data import IGNORE_INDEX
from sky_train.loss import chunked_cross_entropy_sum


@pytest.mark.parametrize("packing,micro", [(True, 1), (False, 2)])
def test_sample_weighting_matches_the_per_sample_mean_reference(tmp_path, packing, micro):
    cfg = tiny_cfg(tmp_path / "run", **{"train.max_steps": 3, "train.loss_weighting": "sample"})
    cfg.data.packing, cfg.train.micro_batch_size = packing, micro
    result = train(cfg)
    ref_losses, _ = reference_run(cfg)
    torch.testing.assert_close(result.losses, ref_losses, rtol=2e-5, atol=2e-5)


def test_the_two_weightings_differ_as_computed_by_hand():
    """Two samples, one with 1 label token and CE 3, one with 3 label tokens and CE 1 each:
    token weighting (3 + 1 + 1 + 1) / 4 = 1.5; sample weighting (3/1 + 3/3) / 2 = 2."""
    hidden = torch.eye(4).unsqueeze(0)  # (1, 4, 4): position t is the one-hot e_t
    vocab = 4
    labels = torch.tensor([[0, 1, 1, 1]])
    w = torch.zeros(vocab, 4)  # logits chosen so that CE(position t) is the number below
    target_ce = [3.0, 1.0, 1.0, 1.0]
    for t, ce in enumerate(target_ce):
        # logits (a, 0, 0, 0) at position 0 / (0, a, 0, 0) elsewhere: CE of the labelled class is
        # log(e^a + 3) - a; solve for a.
        a = torch.log(torch.tensor(3.0) / (torch.exp(torch.tensor(ce)) - 1))
        w[labels[0, t], t] = a
    head = torch.nn.Linear(4, vocab, bias=False)
    head.weight.data = w
    per_token = torch.nn.functional.cross_entropy(head(hidden[0]), labels[0], reduction="none")
    torch.testing.assert_close(per_token, torch.tensor(target_ce))
    positions = torch.arange(4)
    doc_tokens = torch.tensor([1, 3, 3, 3])
    token = chunked_cross_entropy_sum(hidden, head, labels, 2, positions) / 4
    sample = chunked_cross_entropy_sum(hidden, head, labels, 2, positions, 1.0 / doc_tokens) / 2
    assert token.item() == pytest.approx(1.5, rel=1e-6)
    assert sample.item() == pytest.approx(2.0, rel=1e-6)
    # Without precomputed positions the same numbers come out (found with a nonzero instead).
    labels_ignored = torch.tensor([[0, 1, 1, IGNORE_INDEX]])
    assert chunked_cross_entropy_sum(hidden, head, labels_ignored, 3).item() == pytest.approx(5.0, rel=1e-6)
