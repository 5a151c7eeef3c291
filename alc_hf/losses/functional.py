"""Pure tensor functions behind the alc_hf losses.

Every function here takes plain tensors and returns plain tensors: no model, no process group, no data.
The loss modules in :mod:`alc_hf.losses` compose them. Conventions:

- ``scores`` is a ``[B, M]`` matrix of cosine similarities between B queries and M label candidates.
- ``positive_mask`` is a ``[B, M]`` bool matrix, True where candidate j is a positive of query i. A positive is
  never used as a negative.
- ``positive_index`` is a ``[B]`` long vector: the column of each query's own positive in ``scores``.

Masked entries are filled with the dtype's most negative *finite* value rather than ``-inf``: a row with no
negative at all (a batch of one) then yields a zero loss and zero gradient instead of NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Two 31-bit primes: a pair of polynomial hashes gives a 62-bit key whose collisions are negligible.
_HASH_PRIMES = (2_147_483_647, 2_147_483_629)
_HASH_BASES = (1_000_003, 998_244_353)


def _masked_fill_value(tensor: Tensor) -> float:
    return torch.finfo(tensor.dtype).min


def hardest_negative_indices(scores: Tensor, positive_mask: Tensor, k: int = 1) -> Tensor:
    """Indices of the ``k`` highest-scoring negatives of each row, highest first.

    Args:
        scores: ``[B, M]`` similarities.
        positive_mask: ``[B, M]`` bool, True for positives (never returned while a negative remains).
        k: how many negatives per row; clamped to ``M``.

    Returns:
        ``LongTensor[B, min(k, M)]``. Chosen without gradient. A row with fewer than ``k`` negatives is padded with
        indices of positives; ``positive_mask.gather(1, indices)`` tells those apart.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if scores.shape != positive_mask.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and positive_mask {tuple(positive_mask.shape)} differ in shape")
    with torch.no_grad():
        # Half precision is widened for the ranking; float64 keeps its resolution.
        ranked = scores.detach().to(torch.promote_types(scores.dtype, torch.float32))
        # Negatives are lifted to at least the finite minimum and positives set to -inf, so every negative
        # (even one scored -inf) ranks above every positive.
        ranked = ranked.clamp(min=torch.finfo(ranked.dtype).min).masked_fill(positive_mask, float("-inf"))
        return ranked.topk(min(k, scores.size(1)), dim=1).indices


def pair_representation(a: Tensor, b: Tensor) -> Tensor:
    """``[a, b, |a - b|, a * b]`` along the last dimension (4d features), as in sentence-transformers' SoftmaxLoss."""
    if a.shape != b.shape:
        raise ValueError(f"pair_representation needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return torch.cat([a, b, (a - b).abs(), a * b], dim=-1)


def positive_mask_from_ids(candidate_ids: Tensor, query_positive_ids: Tensor) -> Tensor:
    """``[B, M]`` bool: candidate j is a positive of query i when its id is in row i's positive set.

    Args:
        candidate_ids: ``[M]`` label id of each candidate; negative ids mean "unknown" and match nothing.
        query_positive_ids: ``[B, W]`` positive label ids of each query, padded with any negative value.

    Memory is O(B·(M + W)): ids are mapped to dense indices and membership is looked up in a ``[B, U]`` table,
    never through a ``[B, M, W]`` comparison.
    """
    if candidate_ids.dim() != 1 or query_positive_ids.dim() != 2:
        raise ValueError(
            "candidate_ids must be [M] and query_positive_ids [B, W], got "
            f"{tuple(candidate_ids.shape)} and {tuple(query_positive_ids.shape)}"
        )
    num_queries = query_positive_ids.size(0)
    all_ids = torch.cat([candidate_ids, query_positive_ids.reshape(-1)])
    unique_ids, dense = torch.unique(all_ids, return_inverse=True)
    num_unique = unique_ids.numel()
    candidate_dense = dense[: candidate_ids.numel()]
    positive_dense = dense[candidate_ids.numel() :].view(num_queries, -1)
    # Unknown (negative) positive ids go to an extra column that no candidate reads.
    positive_dense = positive_dense.masked_fill(query_positive_ids < 0, num_unique)
    table = torch.zeros(num_queries, num_unique + 1, dtype=torch.bool, device=candidate_ids.device)
    table.scatter_(1, positive_dense, True)
    table[:, num_unique] = False
    mask = table[:, candidate_dense]
    return mask & (candidate_ids >= 0).unsqueeze(0)


def token_sequence_keys(input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """A 62-bit non-negative key per row that is equal exactly when the unpadded token sequences are equal.

    Used to recognise identical texts inside a batch (and across processes) without the texts themselves.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = attention_mask.long()
    # Shift ids by one so that token id 0 inside the mask still counts; padding contributes 0.
    tokens = (input_ids.long() + 1) * mask
    # A token's position within its unpadded sequence, so left and right padding of any width give the same key.
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    keys = torch.zeros(input_ids.size(0), dtype=torch.long, device=input_ids.device)
    for prime, base in zip(_HASH_PRIMES, _HASH_BASES, strict=True):
        powers = torch.tensor(
            [pow(base, t, prime) for t in range(input_ids.size(1))], dtype=torch.long, device=input_ids.device
        )
        # Each product is below 2^62 and a row sums at most `length` values below 2^31: no int64 overflow.
        row_hash = ((tokens % prime) * powers[positions] % prime).sum(dim=1) % prime
        keys = keys * prime + row_hash
    return keys


def multi_positive_softmax_loss(scores: Tensor, positive_mask: Tensor, scale: float = 20.0) -> Tensor:
    """Multi-positive in-batch softmax (DEXML-style decoupled softmax).

    For query i and each in-batch positive p of i, the positive competes only with the negatives of i:
    ``l(i, p) = -log(exp(s·S[i,p]) / (exp(s·S[i,p]) + sum_{n in N(i)} exp(s·S[i,n])))``, where N(i) are the
    candidates that are not positives of i. The loss averages l over the positives of each query, then over queries.
    A query with no negative (or no positive) contributes 0 and still counts in the mean over queries.
    """
    logits = scores * scale
    negative_logits = logits.masked_fill(positive_mask, _masked_fill_value(logits))
    negative_lse = torch.logsumexp(negative_logits, dim=1, keepdim=True)
    # -log(e^x / (e^x + e^z)) = softplus(z - x), stable for every x and z.
    per_pair = F.softplus(negative_lse - logits)
    weights = positive_mask.to(per_pair.dtype)
    per_query = (per_pair * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return per_query.mean()


def hardest_negative_triplet_loss(
    scores: Tensor,
    positive_mask: Tensor,
    positive_index: Tensor,
    margin: float = 0.3,
    num_negatives: int = 10,
) -> Tensor:
    """Triplet loss with online hardest negatives (NGAME/SiameseXML-style).

    ``l(i) = mean_{n in top-k negatives of i} max(0, S[i,n] - S[i,p_i] + margin)`` with p_i the query's own positive
    and the negatives mined without gradient. Averaged over queries; a query with no negative contributes 0.
    """
    negatives = hardest_negative_indices(scores, positive_mask, num_negatives)
    valid = ~positive_mask.gather(1, negatives)
    positive_scores = scores.gather(1, positive_index.unsqueeze(1))
    hinge = F.relu(scores.gather(1, negatives) - positive_scores + margin) * valid
    per_query = hinge.sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    return per_query.mean()


def pair_head_pointwise_loss(positive_logits: Tensor, negative_logits: Tensor, negative_valid: Tensor) -> Tensor:
    """L_ql: binary cross-entropy of the pair head, target 1 for (q, l+) and 0 for (q, hardest negative).

    Args:
        positive_logits: ``[B]`` head logits of each query with its own positive.
        negative_logits: ``[B]`` head logits of each query with its hardest negative.
        negative_valid: ``[B]`` bool, False where the query had no negative (its negative term is dropped).

    Each query contributes the mean of its two terms; queries are averaged.
    """
    positive_term = F.binary_cross_entropy_with_logits(
        positive_logits, torch.ones_like(positive_logits), reduction="none"
    )
    negative_term = F.binary_cross_entropy_with_logits(
        negative_logits, torch.zeros_like(negative_logits), reduction="none"
    )
    # `where`, not a product: a non-finite logit in a dropped term must not turn the loss into NaN.
    negative_term = torch.where(negative_valid, negative_term, torch.zeros_like(negative_term))
    return ((positive_term + negative_term) / 2).mean()


def pair_head_listwise_loss(positive_logits: Tensor, negative_logits: Tensor, negative_valid: Tensor) -> Tensor:
    """L_qb: softmax cross-entropy of the pair head over {positive} ∪ the k hardest in-batch negatives.

    Args:
        positive_logits: ``[B]`` head logits of each query with its own positive.
        negative_logits: ``[B, k]`` head logits of each query with its k hardest negatives.
        negative_valid: ``[B, k]`` bool, False for padding where a query had fewer than k negatives.

    The positive is class 0. A query with no negative contributes 0.
    """
    negative_logits = negative_logits.masked_fill(~negative_valid, _masked_fill_value(negative_logits))
    logits = torch.cat([positive_logits.unsqueeze(1), negative_logits], dim=1)
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def tcm_violation_sums(
    scores: Tensor, positive_mask: Tensor, pos_margin: float = 0.9, neg_margin: float = 0.5
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sums and counts of the TCM margin violations: ``(pos_sum, pos_count, neg_sum, neg_count)``.

    Positive pairs below ``pos_margin`` contribute ``pos_margin - s``; negative pairs above ``neg_margin``
    contribute ``s - neg_margin``. Counts carry no gradient. Split out of :func:`tcm_loss` so that several processes
    can divide their local sums by the counts of the whole (gathered) batch.
    """
    positive_violation = (pos_margin - scores).clamp(min=0) * positive_mask
    negative_violation = (scores - neg_margin).clamp(min=0) * ~positive_mask
    positive_count = ((scores < pos_margin) & positive_mask).sum()
    negative_count = ((scores > neg_margin) & ~positive_mask).sum()
    return positive_violation.sum(), positive_count, negative_violation.sum(), negative_count


def tcm_loss(
    scores: Tensor,
    positive_mask: Tensor,
    pos_margin: float = 0.9,
    neg_margin: float = 0.5,
    pos_weight: float = 1.0,
    neg_weight: float = 1.0,
) -> Tensor:
    """Threshold-Consistent Margin regulariser (Zhang et al., ICLR 2024).

    ``TCM = λ+ · mean_{s in S+, s < m+} (m+ - s) + λ- · mean_{s in S-, s > m-} (s - m-)``: each mean runs over the
    violating pairs only, and a term with no violating pair is 0 (never NaN).
    """
    sums = tcm_violation_sums(scores, positive_mask, pos_margin, neg_margin)
    return tcm_from_violation_sums(*sums, pos_weight=pos_weight, neg_weight=neg_weight)


def tcm_from_violation_sums(
    pos_sum: Tensor, pos_count: Tensor, neg_sum: Tensor, neg_count: Tensor, pos_weight: float, neg_weight: float
) -> Tensor:
    """Combine :func:`tcm_violation_sums` into the TCM value: weighted means over the violating pairs (0 if none)."""
    return pos_weight * pos_sum / pos_count.clamp(min=1) + neg_weight * neg_sum / neg_count.clamp(min=1)
