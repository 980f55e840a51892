"""Best-fit packing, rank splitting and collation, checked against hand-computed cases and invariants."""

import random

import pytest
import torch

from sky_train.data import IGNORE_INDEX, Sample, shift_labels
from sky_train.packing import (
    best_fit_pack, collate_rows, cu_seqlens, packing_efficiency, plan_micro_batches, split_across_ranks,
)


def test_best_fit_decreasing_matches_hand_computed_bins():
    # Sorted 5,4,3,3,2,1 into bins of 8: 5->A(3 left) 4->B(4) 3->A(0) 3->B(1) 2->C(6) 1->B(0).
    assert best_fit_pack([5, 4, 3, 3, 2, 1], 8) == [[0, 2], [1, 3, 5], [4]]


def test_best_fit_picks_the_fullest_bin_that_fits():
    # 6 -> A(4 left), 5 -> B(5 left); 4 fits both and goes to A (least room): A full, B keeps 5 for the 5.
    assert best_fit_pack([6, 5, 4, 5], 10) == [[0, 2], [1, 3]]


def test_every_sample_packed_once_and_no_bin_overflows():
    rng = random.Random(0)
    for _ in range(50):
        lengths = [rng.randint(1, 100) for _ in range(rng.randint(1, 60))]
        bins = best_fit_pack(lengths, 100)
        assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in b) <= 100 for b in bins)
        # Best fit never leaves two bins that could be merged.
        loads = sorted(sum(lengths[i] for i in b) for b in bins)
        assert len(loads) < 2 or loads[0] + loads[1] > 100


def test_a_sample_longer_than_a_row_is_refused():
    with pytest.raises(ValueError, match="sample 1 has 9 tokens"):
        best_fit_pack([3, 9], 8)


def test_ranks_get_balanced_token_counts_and_every_sample_once():
    lengths = [100, 90, 10, 10, 10, 5, 80, 3]
    shares = split_across_ranks(lengths, 2)
    assert sorted(i for s in shares for i in s) == list(range(len(lengths)))
    # Longest first to the lighter rank: 100->A 90->B 80->B(90<100) then 10,10,10,5,3 all to A.
    assert shares == [[0, 2, 3, 4, 5, 7], [1, 6]]
    assert [sum(lengths[i] for i in s) for s in shares] == [138, 170]
    # More ranks than samples: some ranks get nothing (the loop gives them dummy micro-batches).
    assert sorted(len(s) for s in split_across_ranks([5, 6], 3)) == [0, 1, 1]


def _sample(ids, trained):
    return Sample(list(ids), shift_labels(list(ids), trained), "test")


def test_packed_rows_restart_positions_and_pad_as_their_own_document():
    a = _sample([1, 2, 3], [False, True, True])
    b = _sample([4, 5], [False, True])
    c = _sample([6, 7, 8, 9], [False, False, True, True])
    mb = collate_rows([[a, b], [c]], pad_id=0)
    assert mb.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]
    assert mb.position_ids.tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    I = IGNORE_INDEX  # noqa: E741
    assert mb.labels.tolist() == [[2, 3, I, 5, I], [I, 8, 9, I, I]]
    assert mb.doc_lens == [[3, 2], [4, 1]]
    assert mb.real_tokens == 9 and mb.num_label_tokens == 5
    cu, max_len = cu_seqlens(mb.doc_lens)
    assert cu.tolist() == [0, 3, 5, 9, 10] and max_len == 4


def test_no_target_crosses_a_document_boundary():
    rng = random.Random(1)
    samples = []
    for _ in range(20):
        n = rng.randint(2, 30)
        ids = [rng.randint(1, 50) for _ in range(n)]
        samples.append(_sample(ids, [True] * n))
    for mb in plan_micro_batches(samples, max_seq_len=64, micro_batch_size=2, packing=True, pad_id=0):
        for row_labels, lens in zip(mb.labels.tolist(), mb.doc_lens):
            end = 0
            for n in lens:
                end += n
                assert row_labels[end - 1] == IGNORE_INDEX  # a document's last token predicts nothing


def test_packing_beats_padding_on_skewed_lengths():
    lengths = [400] + [20] * 30
    samples = [_sample(range(1, n + 1), [True] * n) for n in lengths]
    packed = plan_micro_batches(samples, 512, 1, packing=True, pad_id=0)
    padded = plan_micro_batches(samples, 512, 4, packing=False, pad_id=0)
    assert sum(mb.real_tokens for mb in packed) == sum(lengths)
    assert packing_efficiency(packed) > 0.95
    # Unpacked rows are sorted longest first, so only the first micro-batch pads to 400.
    assert packing_efficiency(padded) == pytest.approx(sum(lengths) / (4 * 400 + 6 * 4 * 20 + 3 * 20), rel=1e-9)


def test_unpacked_micro_batches_hold_one_sample_per_row():
    samples = [_sample(range(1, n + 1), [True] * n) for n in (3, 7, 5)]
    mbs = plan_micro_batches(samples, 16, 1, packing=False, pad_id=0)
    assert [mb.input_ids.shape for mb in mbs] == [torch.Size([1, 7]), torch.Size([1, 5]), torch.Size([1, 3])]


def test_label_positions_and_document_label_counts_by_hand():
    a = _sample([1, 2, 3], [False, True, True])  # labels 2, 3, I: 2 label tokens
    b = _sample([4, 5], [False, True])  # labels 5, I: 1
    c = _sample([6, 7, 8, 9], [False, False, True, True])  # labels I, 8, 9, I: 2
    mb = collate_rows([[a, b], [c]], pad_id=0)  # T = 5; row 1 ends with one padding token
    # Flat (row * 5 + t) positions of the labels 2, 3, 5 | 8, 9, and the label count of each one's document.
    assert mb.label_positions.tolist() == [0, 1, 3, 6, 7]
    assert mb.label_doc_tokens.tolist() == [2, 2, 1, 2, 2]
    assert mb.label_positions.dtype == mb.label_doc_tokens.dtype == torch.long
    assert mb.labels.view(-1)[mb.label_positions].tolist() == [2, 3, 5, 8, 9]
    assert mb.num_label_tokens == 5
    # Per-sample weighting: the weights 1 / label_doc_tokens sum to 1 per document, so to the number of samples.
    assert (1.0 / mb.label_doc_tokens.double()).sum().item() == pytest.approx(3.0)


def test_samples_backed_by_numpy_views_collate_like_lists():
    import numpy as np

    lists = [_sample([1, 2, 3], [False, True, True]), _sample([4, 5, 6, 7], [False, False, True, True])]
    flat_ids = np.array([t for s in lists for t in s.input_ids], dtype=np.int32)
    flat_labels = np.array([t for s in lists for t in s.labels], dtype=np.int32)
    views = [Sample(flat_ids[0:3], flat_labels[0:3], "v0", num_label_tokens=2),
             Sample(flat_ids[3:7], flat_labels[3:7], "v1")]
    assert [len(s) for s in views] == [3, 4] and views[1].num_label_tokens == 2
    for packing in (True, False):
        want = plan_micro_batches(lists, 8, 2, packing, pad_id=0)
        got = plan_micro_batches(views, 8, 2, packing, pad_id=0)
        for w, g in zip(want, got, strict=True):
            for field in ("input_ids", "labels", "position_ids", "label_positions", "label_doc_tokens"):
                assert torch.equal(getattr(g, field), getattr(w, field)) and getattr(g, field).dtype == torch.long
            assert g.doc_lens == w.doc_lens and g.real_tokens == w.real_tokens
