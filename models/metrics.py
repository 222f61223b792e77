"""Ranking metrics of one recommended list against one user's relevant items.

Every function takes the list best first, the set of relevant items and ``k``; relevance
is binary. Averages over users are the caller's job (see :mod:`models.evaluation`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Set

import numpy as np


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k <= 0:
        raise ValueError(f"k={k!r}; the rule is an int > 0.")


def recall_at_k(recommended: Sequence[str], relevant: Set[str], k: int) -> float:
    """Share of the relevant items found in the first ``k``; 0 when nothing is relevant."""
    _check_k(k)
    if not relevant:
        return 0.0
    return len(set(recommended[:k]) & relevant) / len(relevant)


def precision_at_k(recommended: Sequence[str], relevant: Set[str], k: int) -> float:
    """Relevant items in the first ``k`` over ``k`` (a short list is not padded out)."""
    _check_k(k)
    return len(set(recommended[:k]) & relevant) / k


def hit_rate_at_k(recommended: Sequence[str], relevant: Set[str], k: int) -> float:
    """1 when at least one relevant item is in the first ``k``, else 0."""
    _check_k(k)
    return float(any(item in relevant for item in recommended[:k]))


def ndcg_at_k(recommended: Sequence[str], relevant: Set[str], k: int) -> float:
    """Normalised discounted cumulative gain with binary gains, ``log2(rank + 1)`` discount."""
    _check_k(k)
    if not relevant:
        return 0.0
    dcg = sum(
        1.0 / math.log2(rank + 2) for rank, item in enumerate(recommended[:k]) if item in relevant
    )
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal


def map_at_k(recommended: Sequence[str], relevant: Set[str], k: int) -> float:
    """Average precision at ``k``, normalised by ``min(len(relevant), k)``."""
    _check_k(k)
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for rank, item in enumerate(recommended[:k]):
        if item in relevant:
            hits += 1
            total += hits / (rank + 1)
    return total / min(len(relevant), k)


def coverage(lists: Sequence[Sequence[str]], n_catalogue: int, k: int) -> float:
    """Share of the catalogue that appears in at least one list's first ``k``."""
    _check_k(k)
    if n_catalogue <= 0:
        return 0.0
    seen = {item for items in lists for item in items[:k]}
    return len(seen) / n_catalogue


def novelty(
    lists: Sequence[Sequence[str]], item_share: dict[str, float], k: int, *, floor: float
) -> float:
    """Mean self-information ``-log2(share of users who bought the item)`` over the top ``k``.

    Items never bought before take ``floor`` as their share (one user's worth).
    """
    _check_k(k)
    values = [
        -math.log2(max(item_share.get(item, floor), floor)) for items in lists for item in items[:k]
    ]
    return float(np.mean(values)) if values else 0.0
