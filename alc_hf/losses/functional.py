"""The pure tensor functions more than one loss shares: the hardest negatives of each query, the positive mask from
label ids, the identity of a tokenised text, and the fill value of masked logits. Each loss's own formula lives in
its module (:mod:`~alc_hf.losses.alc`, :mod:`~alc_hf.losses.tcm`, ...). Conventions:

- ``scores`` is a ``[B, M]`` matrix of cosine similarities between B queries and M label candidates.
- ``positive_mask`` is a ``[B, M]`` bool matrix, True where candidate j is a positive of query i. A positive is
  never used as a negative.
- ``positive_index`` is a ``[B]`` long vector: the column of each query's own positive in ``scores``.

Masked entries are filled with the dtype's most negative *finite* value rather than ``-inf``: a row with no
negative at all (a batch of one) then yields a zero loss and zero gradient instead of NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Two 31-bit primes: a pair of polynomial hashes gives a 62-bit key whose collisions are negligible.
_HASH_PRIMES = (2_147_483_647, 2_147_483_629)
_HASH_BASES = (1_000_003, 998_244_353)


def masked_fill_value(tensor: Tensor) -> float:
    """The most negative finite value of ``tensor``'s dtype: what masked logits are filled with (see above)."""
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
