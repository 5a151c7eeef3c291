"""The pure tensor functions of the losses (each loss's formula in its module, the shared ones in
alc_hf.losses.functional), each checked against a slow reference written here.

Every reference is a plain Python loop over rows and pairs (``math`` on floats), written from the method spec
(``shared/method.md``) and the docstrings, never a vectorised copy of the implementation. Inputs are small, random
and seeded: several positives per row, one row with no negative at all and one with only two negatives.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from torch.testing import assert_close

from alc_hf.losses.alc import pair_head_listwise_loss, pair_head_pointwise_loss
from alc_hf.losses.functional import hardest_negative_indices, positive_mask_from_ids, token_sequence_keys
from alc_hf.losses.hardest_negative_triplet import hardest_negative_triplet_loss
from alc_hf.losses.multi_positive_softmax import multi_positive_softmax_loss
from alc_hf.losses.pair_head import pair_representation
from alc_hf.losses.tcm import tcm_from_violation_sums, tcm_violation_sums


def tcm_loss(scores, positive_mask, pos_margin=0.9, neg_margin=0.5, pos_weight=1.0, neg_weight=1.0):
    """TCM on one process, as TCMLoss composes it: the violation sums divided by the counts."""
    sums = tcm_violation_sums(scores, positive_mask, pos_margin, neg_margin)
    return tcm_from_violation_sums(*sums, pos_weight=pos_weight, neg_weight=neg_weight)


# (seed, queries B, candidates M)
CASES = [(0, 5, 9), (1, 6, 11), (2, 7, 14)]


def make_case(seed, num_queries, num_candidates, dtype=torch.float64):
    """Random cosines in [-1, 1], a positive mask and each query's own positive column.

    Row 0 has no negative (every candidate is a positive), row 1 has exactly two negatives, the other rows have 1 to
    4 positives. Scores are continuous, so there are no ties.
    """
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    scores = (torch.rand(num_queries, num_candidates, generator=generator, dtype=torch.float64) * 2 - 1).to(dtype)
    rows = []
    for i in range(num_queries):
        if i == 0:
            positives = list(range(num_candidates))
        elif i == 1:
            positives = rng.sample(range(num_candidates), num_candidates - 2)
        else:
            positives = rng.sample(range(num_candidates), rng.randint(1, 4))
        rows.append([j in positives for j in range(num_candidates)])
    positive_mask = torch.tensor(rows, dtype=torch.bool)
    positive_index = torch.tensor(
        [rng.choice([j for j in range(num_candidates) if rows[i][j]]) for i in range(num_queries)], dtype=torch.long
    )
    return scores, positive_mask, positive_index


def ranked_negatives(score_row, mask_row):
    """Columns that are not positives, by score, highest first."""
    negatives = [j for j, is_positive in enumerate(mask_row) if not is_positive]
    return sorted(negatives, key=lambda j: score_row[j], reverse=True)


# ---------------------------------------------------------------------------------------------------------------
# hardest_negative_indices


@pytest.mark.parametrize("k", [1, 3, 10, 20])
@pytest.mark.parametrize("seed,num_queries,num_candidates", CASES)
def test_hardest_negative_indices_matches_reference(seed, num_queries, num_candidates, k):
    scores, positive_mask, _ = make_case(seed, num_queries, num_candidates)
    indices = hardest_negative_indices(scores, positive_mask, k)

    width = min(k, num_candidates)
    assert indices.dtype == torch.long
    assert tuple(indices.shape) == (num_queries, width)
    score_rows, mask_rows, index_rows = scores.tolist(), positive_mask.tolist(), indices.tolist()
    padded_rows = 0
    for i in range(num_queries):
        expected = ranked_negatives(score_rows[i], mask_rows[i])[:width]
        got = index_rows[i]
        # The negatives come first, highest score first, exactly as the reference ranks them.
        assert got[: len(expected)] == expected, f"row {i}"
        # Padding (only when the row has fewer than k negatives) is made of positives, without repetition.
        padding = got[len(expected) :]
        assert all(mask_rows[i][j] for j in padding), f"row {i} padded with a negative"
        assert len(set(got)) == width
        padded_rows += bool(padding)
        # positive_mask.gather tells the padding apart from the negatives.
        flags = positive_mask.gather(1, indices)[i].tolist()
        assert flags == [False] * len(expected) + [True] * len(padding)
    # Row 0 has no negative: it is all padding whatever k.
    assert padded_rows >= 1


@pytest.mark.parametrize("seed,num_queries,num_candidates", CASES)
def test_hardest_negative_indices_k_above_m_is_clamped(seed, num_queries, num_candidates):
    scores, positive_mask, _ = make_case(seed, num_queries, num_candidates)
    indices = hardest_negative_indices(scores, positive_mask, num_candidates + 5)
    assert tuple(indices.shape) == (num_queries, num_candidates)
    # Every column appears once per row: negatives first, then every positive.
    for i, row in enumerate(indices.tolist()):
        assert sorted(row) == list(range(num_candidates))
        num_negatives = int((~positive_mask[i]).sum())
        assert not positive_mask[i, row[:num_negatives]].any()
        assert positive_mask[i, row[num_negatives:]].all()


@pytest.mark.parametrize("k", [0, -1])
def test_hardest_negative_indices_rejects_k_below_one(k):
    scores, positive_mask, _ = make_case(0, 5, 9)
    with pytest.raises(ValueError):
        hardest_negative_indices(scores, positive_mask, k)


def test_hardest_negative_indices_rejects_mismatched_shapes():
    scores, positive_mask, _ = make_case(0, 5, 9)
    with pytest.raises(ValueError):
        hardest_negative_indices(scores, positive_mask[:, :-1], 2)


def test_hardest_negative_indices_carries_no_gradient():
    scores, positive_mask, _ = make_case(1, 6, 11)
    scores = (scores * 1.0).requires_grad_(True)
    assert scores.requires_grad
    indices = hardest_negative_indices(scores, positive_mask, 3)
    assert indices.grad_fn is None
    assert not indices.requires_grad


def test_hardest_negative_indices_keeps_float64_order():
    scores = torch.tensor([[0.1, 0.1 + 1e-12, -0.5]], dtype=torch.float64)
    positive_mask = torch.zeros(1, 3, dtype=torch.bool)
    assert hardest_negative_indices(scores, positive_mask, 2).tolist() == [[1, 0]]


def test_hardest_negative_indices_ranks_a_minus_infinity_negative_above_positives():
    scores = torch.tensor([[float("-inf"), 0.3, 0.2, 0.1]])
    positive_mask = torch.tensor([[False, True, True, True]])
    assert hardest_negative_indices(scores, positive_mask, 2)[0, 0].item() == 0


# ---------------------------------------------------------------------------------------------------------------
# pair_representation


@pytest.mark.parametrize("leading", [(5,), (4, 3)])
def test_pair_representation_matches_reference(leading):
    dim = 6
    generator = torch.Generator().manual_seed(len(leading))
    a = torch.randn(*leading, dim, generator=generator, dtype=torch.float64)
    b = torch.randn(*leading, dim, generator=generator, dtype=torch.float64)
    out = pair_representation(a, b)
    assert tuple(out.shape) == (*leading, 4 * dim)

    expected = torch.empty(*leading, 4 * dim, dtype=torch.float64)
    for position in itertools.product(*(range(n) for n in leading)):
        for t in range(dim):
            x, y = a[position][t].item(), b[position][t].item()
            expected[position][t] = x
            expected[position][dim + t] = y
            expected[position][2 * dim + t] = math.fabs(x - y)
            expected[position][3 * dim + t] = x * y
    assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("shape_a,shape_b", [((3, 4), (3, 5)), ((3, 4), (2, 4)), ((2, 3, 4), (3, 4))])
def test_pair_representation_rejects_mismatched_shapes(shape_a, shape_b):
    with pytest.raises(ValueError):
        pair_representation(torch.zeros(shape_a), torch.zeros(shape_b))


# ---------------------------------------------------------------------------------------------------------------
# positive_mask_from_ids


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_positive_mask_from_ids_matches_reference(seed):
    rng = random.Random(seed)
    num_queries, width = 6, 4
    num_candidates = 9 + seed
    # Duplicated ids, and negative ("unknown") candidate ids among them, -1 included (the padding value).
    candidate_ids = [rng.randint(-3, 7) for _ in range(num_candidates)]
    candidate_ids[0], candidate_ids[1], candidate_ids[2] = -1, 4, 4
    rows = []
    for i in range(num_queries):
        count = 0 if i == 0 else rng.randint(1, width)
        ids = [rng.randint(0, 9) for _ in range(count)]  # 8 and 9 never occur among candidates
        pad = [rng.choice([-1, -5]) for _ in range(width - count)]
        rows.append(ids + pad)
    rows[1] = [4, 4, -1, -1]  # a duplicated positive id
    query_positive_ids = torch.tensor(rows, dtype=torch.long)

    mask = positive_mask_from_ids(torch.tensor(candidate_ids, dtype=torch.long), query_positive_ids)

    expected = []
    for i in range(num_queries):
        positive_set = {x for x in rows[i] if x >= 0}
        expected.append([candidate_ids[j] >= 0 and candidate_ids[j] in positive_set for j in range(num_candidates)])
    assert mask.dtype == torch.bool
    assert tuple(mask.shape) == (num_queries, num_candidates)
    assert mask.tolist() == expected
    # The hand-set rows: no positive at all, and both copies of id 4 matched.
    assert not mask[0].any()
    assert mask[1, 1] and mask[1, 2]


def test_positive_mask_from_ids_rejects_wrong_dims():
    with pytest.raises(ValueError):
        positive_mask_from_ids(torch.tensor([[1, 2]]), torch.tensor([[1, 2]]))
    with pytest.raises(ValueError):
        positive_mask_from_ids(torch.tensor([1, 2]), torch.tensor([1, 2]))


# ---------------------------------------------------------------------------------------------------------------
# token_sequence_keys


def pad_right(sequences, width, pad_id):
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(sequences), width, dtype=torch.long)
    for i, sequence in enumerate(sequences):
        for t, token in enumerate(sequence):
            input_ids[i, t] = token
            attention_mask[i, t] = 1
    return input_ids, attention_mask


def token_sequences(seed):
    rng = random.Random(seed)
    # A small vocabulary (0 included) makes repeated sequences likely.
    sequences = [[rng.randint(0, 3) for _ in range(rng.randint(1, 5))] for _ in range(16)]
    sequences += [[5, 7], [5, 7, 0], [5, 7, 0, 0], [0], [0, 0], [7, 5], [5, 7], [30521, 101], [101, 30521]]
    return sequences


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_sequence_keys_equal_exactly_for_equal_sequences(seed):
    sequences = token_sequences(seed)
    longest = max(len(s) for s in sequences)
    # Two batches holding the same texts, padded to different widths with different pad ids.
    keys_a = token_sequence_keys(*pad_right(sequences, longest, 0))
    keys_b = token_sequence_keys(*pad_right(sequences, longest + 3, 1))
    assert keys_a.dtype == torch.long
    for keys in (keys_a, keys_b):
        assert (keys >= 0).all()
    assert len({tuple(s) for s in sequences}) < len(sequences)  # the case does hold repeats
    for i, j in itertools.product(range(len(sequences)), repeat=2):
        same = sequences[i] == sequences[j]
        assert (keys_a[i] == keys_b[j]).item() == same, (sequences[i], sequences[j])
        assert (keys_a[i] == keys_a[j]).item() == same, (sequences[i], sequences[j])


def test_token_sequence_keys_trailing_zero_token_counts():
    input_ids = torch.tensor([[5, 7, 0, 0], [5, 7, 0, 0], [5, 7, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    keys = token_sequence_keys(input_ids, attention_mask).tolist()
    assert len(set(keys)) == 3


def test_token_sequence_keys_without_mask_means_all_tokens():
    sequences = [[3, 1, 4], [1, 5, 9], [3, 1, 4]]
    unmasked = token_sequence_keys(torch.tensor(sequences))
    assert_close(unmasked, token_sequence_keys(*pad_right(sequences, 3, 0)), rtol=0, atol=0)
    # The same texts inside a wider, padded batch get the same keys.
    assert_close(unmasked, token_sequence_keys(*pad_right(sequences + [[2, 6, 5, 3, 5]], 5, 0))[:3], rtol=0, atol=0)
    assert unmasked[0] == unmasked[2] and unmasked[0] != unmasked[1]


def test_token_sequence_keys_left_padding():
    # [2, 3] left-padded to width 3 and width 4 (the padding side of many decoder-based embedding models).
    keys_3 = token_sequence_keys(torch.tensor([[0, 2, 3]]), torch.tensor([[0, 1, 1]]))
    keys_4 = token_sequence_keys(torch.tensor([[0, 0, 2, 3]]), torch.tensor([[0, 0, 1, 1]]))
    unpadded = token_sequence_keys(torch.tensor([[2, 3]]))
    assert keys_3.item() == keys_4.item() == unpadded.item()


# ---------------------------------------------------------------------------------------------------------------
# multi_positive_softmax_loss


def reference_multi_positive(scores, positive_mask, scale, stable):
    score_rows, mask_rows = scores.tolist(), positive_mask.tolist()
    row_losses = []
    for score_row, mask_row in zip(score_rows, mask_rows, strict=True):
        positives = [scale * s for s, p in zip(score_row, mask_row, strict=True) if p]
        negatives = [scale * s for s, p in zip(score_row, mask_row, strict=True) if not p]
        assert positives, "every test row has a positive"
        if not negatives:
            row_losses.append(0.0)
            continue
        pair_losses = []
        for x in positives:
            if stable:
                # -log(e^x / (e^x + sum e^n)) = log(e^x + sum e^n) - x, with the largest logit factored out.
                top = max([x] + negatives)
                log_total = top + math.log(math.exp(x - top) + sum(math.exp(n - top) for n in negatives))
                pair_losses.append(log_total - x)
            else:
                pair_losses.append(-math.log(math.exp(x) / (math.exp(x) + sum(math.exp(n) for n in negatives))))
        row_losses.append(sum(pair_losses) / len(pair_losses))
    return sum(row_losses) / len(row_losses)


@pytest.mark.parametrize("seed,num_queries,num_candidates", CASES)
def test_multi_positive_softmax_loss_matches_reference(seed, num_queries, num_candidates):
    scores, positive_mask, _ = make_case(seed, num_queries, num_candidates)
    loss = multi_positive_softmax_loss(scores, positive_mask, scale=2.0)
    expected = reference_multi_positive(scores, positive_mask, 2.0, stable=False)
    assert loss.dim() == 0
    assert_close(loss, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("seed,num_queries,num_candidates", CASES)
def test_multi_positive_softmax_loss_default_scale(seed, num_queries, num_candidates):
    scores, positive_mask, _ = make_case(seed, num_queries, num_candidates)
    expected = reference_multi_positive(scores, positive_mask, 20.0, stable=True)
    assert_close(multi_positive_softmax_loss(scores, positive_mask), torch.tensor(expected, dtype=torch.float64))
    # float32 scores too (what training uses), against the float64 reference.
    loss32 = multi_positive_softmax_loss(scores.float(), positive_mask)
    assert loss32.dtype == torch.float32
    assert_close(loss32, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-5)


def test_multi_positive_softmax_loss_is_stable_for_large_logits():
    # Logits up to +-800: exp overflows even float64, so only a stable implementation stays finite and right.
    scores, positive_mask, _ = make_case(4, 6, 10)
    scores = scores * 40
    expected = reference_multi_positive(scores, positive_mask, 20.0, stable=True)
    assert expected > 1.0  # the case is not trivially zero
    for dtype in (torch.float64, torch.float32):
        loss = multi_positive_softmax_loss(scores.to(dtype), positive_mask)
        assert torch.isfinite(loss)
        assert_close(loss, torch.tensor(expected, dtype=dtype), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multi_positive_softmax_loss_without_negatives_is_zero(dtype):
    # A batch of one, and a batch whose rows are all positives of each other.
    for num_queries, num_candidates in ((1, 1), (3, 4)):
        scores = (torch.rand(num_queries, num_candidates, dtype=dtype) * 2 - 1).requires_grad_(True)
        positive_mask = torch.ones(num_queries, num_candidates, dtype=torch.bool)
        loss = multi_positive_softmax_loss(scores, positive_mask)
        assert loss.item() == 0.0
        loss.backward()
        assert torch.isfinite(scores.grad).all()
        assert_close(scores.grad, torch.zeros_like(scores))


def test_multi_positive_softmax_loss_gradcheck():
    scores, positive_mask, _ = make_case(5, 4, 6)
    scores = scores.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: multi_positive_softmax_loss(s, positive_mask, scale=3.0), (scores,))
    # The row without negative (row 0) gets no gradient.
    multi_positive_softmax_loss(scores, positive_mask, scale=3.0).backward()
    assert (scores.grad[0] == 0).all()
    assert (scores.grad[1:] != 0).any()


# ---------------------------------------------------------------------------------------------------------------
# hardest_negative_triplet_loss


def reference_triplet(scores, positive_mask, positive_index, margin, num_negatives):
    """Returns the loss and the columns of the hardest negatives used per row."""
    score_rows, mask_rows = scores.tolist(), positive_mask.tolist()
    row_losses, chosen = [], []
    for i, (score_row, mask_row) in enumerate(zip(score_rows, mask_rows, strict=True)):
        negatives = ranked_negatives(score_row, mask_row)[:num_negatives]
        chosen.append(negatives)
        positive_score = score_row[int(positive_index[i])]
        if not negatives:
            row_losses.append(0.0)
            continue
        hinges = [max(0.0, score_row[n] - positive_score + margin) for n in negatives]
        row_losses.append(sum(hinges) / len(hinges))
    return sum(row_losses) / len(row_losses), chosen


@pytest.mark.parametrize("margin", [0.3, 0.8])
@pytest.mark.parametrize("num_negatives", [1, 3, 10])
@pytest.mark.parametrize("seed,num_queries,num_candidates", CASES)
def test_hardest_negative_triplet_loss_matches_reference(seed, num_queries, num_candidates, num_negatives, margin):
    scores, positive_mask, positive_index = make_case(seed, num_queries, num_candidates)
    loss = hardest_negative_triplet_loss(scores, positive_mask, positive_index, margin, num_negatives)
    expected, _ = reference_triplet(scores, positive_mask, positive_index, margin, num_negatives)
    assert expected > 0
    assert_close(loss, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("seed,num_queries,num_candidates", CASES)
def test_hardest_negative_triplet_loss_gradient(seed, num_queries, num_candidates):
    margin, num_negatives = 0.3, 3
    scores, positive_mask, positive_index = make_case(seed, num_queries, num_candidates)
    scores = scores.clone().requires_grad_(True)
    hardest_negative_triplet_loss(scores, positive_mask, positive_index, margin, num_negatives).backward()

    # d/dS of mean_i mean_n max(0, S[i,n] - S[i,p_i] + m): +-1/(B·k_i) on each active hinge, 0 elsewhere.
    _, chosen = reference_triplet(scores.detach(), positive_mask, positive_index, margin, num_negatives)
    expected = [[0.0] * num_candidates for _ in range(num_queries)]
    score_rows = scores.tolist()
    for i, negatives in enumerate(chosen):
        p = int(positive_index[i])
        for n in negatives:
            if score_rows[i][n] - score_rows[i][p] + margin > 0:
                expected[i][n] += 1.0 / (num_queries * len(negatives))
                expected[i][p] -= 1.0 / (num_queries * len(negatives))
    assert_close(scores.grad, torch.tensor(expected, dtype=torch.float64))


def test_hardest_negative_triplet_loss_without_negatives_is_zero():
    scores = (torch.rand(3, 3) * 2 - 1).requires_grad_(True)
    positive_mask = torch.ones(3, 3, dtype=torch.bool)
    loss = hardest_negative_triplet_loss(scores, positive_mask, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad == 0).all()


# ---------------------------------------------------------------------------------------------------------------
# pair_head_pointwise_loss and pair_head_listwise_loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_head_pointwise_loss_matches_reference(seed):
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    num_queries = 5 + seed
    positive_logits = torch.randn(num_queries, generator=generator, dtype=torch.float64) * 3
    negative_logits = torch.randn(num_queries, generator=generator, dtype=torch.float64) * 3
    valid = [True, False] + [rng.random() < 0.7 for _ in range(num_queries - 2)]
    negative_valid = torch.tensor(valid)
    # A dropped negative term must not count, however large its logit.
    negative_logits = torch.where(negative_valid, negative_logits, torch.full_like(negative_logits, 30.0))
    negative_logits.requires_grad_(True)

    loss = pair_head_pointwise_loss(positive_logits, negative_logits, negative_valid)

    total = 0.0
    for x, z, is_valid in zip(positive_logits.tolist(), negative_logits.tolist(), valid, strict=True):
        bce_positive = math.log(1 + math.exp(-x))  # target 1
        bce_negative = math.log(1 + math.exp(z))  # target 0
        total += (bce_positive + (bce_negative if is_valid else 0.0)) / 2
    assert_close(loss, torch.tensor(total / num_queries, dtype=torch.float64))
    loss.backward()
    assert (negative_logits.grad[~negative_valid] == 0).all()
    assert (negative_logits.grad[negative_valid] != 0).all()


def reference_listwise(positive_logits, negative_logits, negative_valid):
    row_losses = []
    rows = zip(positive_logits.tolist(), negative_logits.tolist(), negative_valid.tolist(), strict=True)
    for x, row, valid_row in rows:
        negatives = [z for z, is_valid in zip(row, valid_row, strict=True) if is_valid]
        if not negatives:
            row_losses.append(0.0)
            continue
        row_losses.append(-math.log(math.exp(x) / (math.exp(x) + sum(math.exp(z) for z in negatives))))
    return sum(row_losses) / len(row_losses)


def make_listwise_case(seed, num_queries=6, k=4):
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    positive_logits = torch.randn(num_queries, generator=generator, dtype=torch.float64) * 3
    negative_logits = torch.randn(num_queries, k, generator=generator, dtype=torch.float64) * 3
    # Row 0 has no valid negative, row 1 one; padding comes last, as hardest_negative_indices produces it.
    counts = [0, 1] + [rng.randint(1, k) for _ in range(num_queries - 2)]
    negative_valid = torch.tensor([[t < count for t in range(k)] for count in counts])
    negative_logits = torch.where(negative_valid, negative_logits, torch.full_like(negative_logits, 40.0))
    return positive_logits, negative_logits, negative_valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_head_listwise_loss_matches_reference(seed):
    positive_logits, negative_logits, negative_valid = make_listwise_case(seed)
    loss = pair_head_listwise_loss(positive_logits, negative_logits, negative_valid)
    expected = reference_listwise(positive_logits, negative_logits, negative_valid)
    assert expected > 0
    assert_close(loss, torch.tensor(expected, dtype=torch.float64))


def test_pair_head_listwise_loss_gradients():
    positive_logits, negative_logits, negative_valid = make_listwise_case(3)
    positive_logits.requires_grad_(True)
    negative_logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda pos, neg: pair_head_listwise_loss(pos, neg, negative_valid), (positive_logits, negative_logits)
    )
    pair_head_listwise_loss(positive_logits, negative_logits, negative_valid).backward()
    assert torch.isfinite(positive_logits.grad).all() and torch.isfinite(negative_logits.grad).all()
    assert (negative_logits.grad[~negative_valid] == 0).all()
    assert positive_logits.grad[0] == 0  # the row without a valid negative


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pair_head_listwise_loss_without_valid_negatives_is_zero(dtype):
    positive_logits = torch.tensor([-3.0, 0.5, 4.0], dtype=dtype, requires_grad=True)
    negative_logits = torch.tensor([[1.0, 2.0], [50.0, -50.0], [0.0, 0.0]], dtype=dtype, requires_grad=True)
    negative_valid = torch.zeros(3, 2, dtype=torch.bool)
    loss = pair_head_listwise_loss(positive_logits, negative_logits, negative_valid)
    assert loss.item() == 0.0
    loss.backward()
    for grad in (positive_logits.grad, negative_logits.grad):
        assert not torch.isnan(grad).any()
        assert (grad == 0).all()


# ---------------------------------------------------------------------------------------------------------------
# tcm_loss, tcm_violation_sums, tcm_from_violation_sums


def reference_tcm(scores, positive_mask, pos_margin=0.9, neg_margin=0.5, pos_weight=1.0, neg_weight=1.0):
    """TCM straight from the spec; returns the value and the violating (row, column) pairs of each kind."""
    positive_violations, negative_violations = [], []
    for i, (score_row, mask_row) in enumerate(zip(scores.tolist(), positive_mask.tolist(), strict=True)):
        for j, (s, is_positive) in enumerate(zip(score_row, mask_row, strict=True)):
            if is_positive and s < pos_margin:
                positive_violations.append((i, j, pos_margin - s))
            elif not is_positive and s > neg_margin:
                negative_violations.append((i, j, s - neg_margin))
    pos_term = sum(v for _, _, v in positive_violations) / len(positive_violations) if positive_violations else 0.0
    neg_term = sum(v for _, _, v in negative_violations) / len(negative_violations) if negative_violations else 0.0
    return pos_weight * pos_term + neg_weight * neg_term, positive_violations, negative_violations


def tcm_case(seed, kind):
    scores, positive_mask, _ = make_case(seed, 6, 11)
    generator = torch.Generator().manual_seed(seed + 100)
    above = 0.92 + 0.08 * torch.rand(scores.shape, generator=generator, dtype=torch.float64)  # > m+ = 0.9
    below = -1 + 1.45 * torch.rand(scores.shape, generator=generator, dtype=torch.float64)  # < m- = 0.5
    if kind in ("no_positive_violation", "nothing"):
        scores = torch.where(positive_mask, above, scores)
    if kind in ("no_negative_violation", "nothing"):
        scores = torch.where(positive_mask, scores, below)
    return scores, positive_mask


TCM_SETTINGS = [
    # (kind, pos_margin, neg_margin, pos_weight, neg_weight)
    ("random", 0.9, 0.5, 1.0, 1.0),
    ("random", 0.7, 0.2, 0.3, 2.5),
    ("no_positive_violation", 0.9, 0.5, 1.0, 1.0),
    ("no_negative_violation", 0.9, 0.5, 1.0, 1.0),
    ("no_negative_violation", 0.9, 0.5, 2.0, 0.5),
]


@pytest.mark.parametrize("kind,pos_margin,neg_margin,pos_weight,neg_weight", TCM_SETTINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tcm_loss_matches_reference(seed, kind, pos_margin, neg_margin, pos_weight, neg_weight):
    scores, positive_mask = tcm_case(seed, kind)
    expected, positive_violations, negative_violations = reference_tcm(
        scores, positive_mask, pos_margin, neg_margin, pos_weight, neg_weight
    )
    # The case is what it claims to be.
    assert bool(positive_violations) == (kind != "no_positive_violation")
    assert bool(negative_violations) == (kind != "no_negative_violation")

    loss = tcm_loss(scores, positive_mask, pos_margin, neg_margin, pos_weight, neg_weight)
    assert_close(loss, torch.tensor(expected, dtype=torch.float64))

    pos_sum, pos_count, neg_sum, neg_count = tcm_violation_sums(scores, positive_mask, pos_margin, neg_margin)
    assert pos_count.item() == len(positive_violations)
    assert neg_count.item() == len(negative_violations)
    assert_close(pos_sum, torch.tensor(sum(v for _, _, v in positive_violations), dtype=torch.float64))
    assert_close(neg_sum, torch.tensor(sum(v for _, _, v in negative_violations), dtype=torch.float64))
    combined = tcm_from_violation_sums(pos_sum, pos_count, neg_sum, neg_count, pos_weight, neg_weight)
    assert_close(combined, loss, rtol=0, atol=0)


@pytest.mark.parametrize("kind,pos_margin,neg_margin,pos_weight,neg_weight", TCM_SETTINGS)
def test_tcm_loss_gradient(kind, pos_margin, neg_margin, pos_weight, neg_weight):
    scores, positive_mask = tcm_case(7, kind)
    scores = scores.clone().requires_grad_(True)
    tcm_loss(scores, positive_mask, pos_margin, neg_margin, pos_weight, neg_weight).backward()
    _, positive_violations, negative_violations = reference_tcm(
        scores.detach(), positive_mask, pos_margin, neg_margin, pos_weight, neg_weight
    )
    # -λ+/n+ on each violating positive, +λ-/n- on each violating negative, 0 on every other pair.
    expected = [[0.0] * scores.size(1) for _ in range(scores.size(0))]
    for i, j, _ in positive_violations:
        expected[i][j] = -pos_weight / len(positive_violations)
    for i, j, _ in negative_violations:
        expected[i][j] = neg_weight / len(negative_violations)
    assert_close(scores.grad, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1])
def test_tcm_loss_without_violation_is_zero(seed, dtype):
    scores, positive_mask = tcm_case(seed, "nothing")
    expected, positive_violations, negative_violations = reference_tcm(scores, positive_mask)
    assert expected == 0.0 and not positive_violations and not negative_violations
    scores = scores.to(dtype).requires_grad_(True)
    loss = tcm_loss(scores, positive_mask)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad == 0).all()
    pos_sum, pos_count, neg_sum, neg_count = tcm_violation_sums(scores, positive_mask)
    assert pos_count.item() == 0 and neg_count.item() == 0


def test_tcm_counts_carry_no_gradient():
    scores, positive_mask = tcm_case(0, "random")
    scores = scores.clone().requires_grad_(True)
    pos_sum, pos_count, neg_sum, neg_count = tcm_violation_sums(scores, positive_mask)
    assert pos_sum.requires_grad and neg_sum.requires_grad
    assert not pos_count.requires_grad and not neg_count.requires_grad
    assert not pos_count.is_floating_point() and not neg_count.is_floating_point()


def test_tcm_margin_boundary_is_not_a_violation():
    # A score exactly on a margin violates nothing (the spec's inequalities are strict).
    scores = torch.tensor([[0.9, 0.5, 0.89], [0.5, 0.9, 0.51]], dtype=torch.float64)
    positive_mask = torch.tensor([[True, False, True], [False, True, False]])
    expected, positive_violations, negative_violations = reference_tcm(scores, positive_mask)
    assert len(positive_violations) == 1 and len(negative_violations) == 1
    assert_close(tcm_loss(scores, positive_mask), torch.tensor(expected, dtype=torch.float64))
    _, pos_count, _, neg_count = tcm_violation_sums(scores, positive_mask)
    assert pos_count.item() == 1 and neg_count.item() == 1


def test_pair_head_pointwise_loss_ignores_non_finite_logits_of_dropped_negatives():
    positive_logits = torch.tensor([0.5, -0.2])
    negative_logits = torch.tensor([float("inf"), 0.3])
    loss = pair_head_pointwise_loss(positive_logits, negative_logits, torch.tensor([False, True]))
    expected = (math.log1p(math.exp(-0.5)) / 2 + (math.log1p(math.exp(0.2)) + math.log1p(math.exp(0.3))) / 2) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
