"""Business rules applied to candidates before and after ranking, and the diversity step.

* items the user bought in the last ``recent_days`` days are not recommended;
* non-product codes (postage, fees, gift vouchers) are never shown;
* items not sold for ``unsold_days`` days count as unavailable;
* a request's ``exclude_items`` and basket are honoured.

The purchase history is indexed once at start-up from the events table and every check
takes the request's time, so a replayed request sees only what happened before it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from feature_repo import schema as S
from feature_repo.config import Paths

logger = logging.getLogger(__name__)


def is_non_product(item_id: str) -> bool:
    """Whether ``item_id`` is a fee, postage or admin code rather than a product."""
    code = item_id.strip().upper()
    return code in S.NON_PRODUCT_CODES or code.startswith(S.NON_PRODUCT_PREFIXES)


def _seconds(value: datetime) -> int:
    return int(value.timestamp())


@dataclass
class PurchaseIndex:
    """When each user bought each item, and when each item last sold, as of any time.

    Attributes
    ----------
    user_items
        ``user_id -> (item ids, purchase times in epoch seconds)``, sorted by time.
    item_sales
        ``item_id -> sorted purchase times in epoch seconds``.
    data_end
        The newest event's time: the service's clock when no other is configured.
    """

    user_items: dict[str, tuple[np.ndarray, np.ndarray]]
    item_sales: dict[str, np.ndarray]
    data_end: datetime | None
    _memo: dict[tuple[int, int], dict[str, bool]] = field(default_factory=dict, repr=False)

    @classmethod
    def empty(cls) -> PurchaseIndex:
        return cls({}, {}, None)

    @classmethod
    def from_events(cls, paths: Paths) -> PurchaseIndex:
        """Index the purchases of the ingested events table."""
        import polars as pl

        from feature_repo.ingest import scan_events

        frame = (
            scan_events(paths)
            .filter(pl.col(S.EVENT_TYPE) == S.PURCHASE)
            .select(
                pl.col(S.USER_ID).cast(pl.String),
                pl.col(S.ITEM_ID).cast(pl.String),
                pl.col(S.EVENT_TIMESTAMP).dt.epoch("s").alias("t"),
            )
            .sort("t")
            .collect()
        )
        if frame.height == 0:
            logger.warning("no events under %s: the purchase rules are off", paths.events)
            return cls.empty()
        item_sales = {
            str(key[0]): group.get_column("t").to_numpy()
            for key, group in frame.group_by(S.ITEM_ID, maintain_order=True)
        }
        user_items = {
            str(key[0]): (
                group.get_column(S.ITEM_ID).to_numpy().astype(object),
                group.get_column("t").to_numpy(),
            )
            for key, group in frame.filter(pl.col(S.USER_ID).is_not_null()).group_by(
                S.USER_ID, maintain_order=True
            )
        }
        data_end = datetime.fromtimestamp(int(frame.get_column("t").max()), tz=UTC)  # type: ignore[arg-type]
        logger.info(
            "purchase index: %d users, %d items, last event %s",
            len(user_items),
            len(item_sales),
            data_end.isoformat(),
        )
        return cls(user_items, item_sales, data_end)

    def recent_items(self, user_id: str | None, *, as_of: datetime, days: int) -> set[str]:
        """Items ``user_id`` bought in ``[as_of - days, as_of)``."""
        if user_id is None or days <= 0 or user_id not in self.user_items:
            return set()
        items, times = self.user_items[user_id]
        end = _seconds(as_of)
        lo = np.searchsorted(times, end - days * 86400, side="left")
        hi = np.searchsorted(times, end, side="left")
        return set(items[lo:hi].tolist())

    def available(self, item_ids: Sequence[str], *, as_of: datetime, days: int) -> np.ndarray:
        """Boolean mask: sold at least once in ``[as_of - days, as_of)``.

        Items the index has never seen count as available, so an empty index (no events
        table) disables the rule instead of hiding everything. Answers are memoised per
        item and request time rounded down to the second.
        """
        if not self.item_sales:
            return np.ones(len(item_ids), dtype=bool)
        end = _seconds(as_of)
        start = end - days * 86400
        memo = self._memo.get((end, days))
        if memo is None:
            if len(self._memo) > 64:
                self._memo.clear()
            memo = self._memo[(end, days)] = {}
        mask = np.ones(len(item_ids), dtype=bool)
        for i, item_id in enumerate(item_ids):
            known = memo.get(item_id)
            if known is None:
                sales = self.item_sales.get(item_id)
                if sales is None:
                    known = True
                else:
                    hi = int(np.searchsorted(sales, end, side="left"))
                    known = bool(hi > 0 and sales[hi - 1] >= start)
                memo[item_id] = known
            mask[i] = known
        return mask


@dataclass(frozen=True)
class RuleOutcome:
    """Which candidates survive, and how many each rule removed (for logs and metrics)."""

    keep: np.ndarray
    removed: dict[str, int]


def apply_rules(
    item_ids: Sequence[str],
    *,
    index: PurchaseIndex,
    user_id: str | None,
    as_of: datetime,
    recent_days: int,
    unsold_days: int,
    exclude: Iterable[str] = (),
) -> RuleOutcome:
    """Mask of candidates allowed by every business rule.

    Parameters
    ----------
    item_ids
        Candidate ids, any order.
    exclude
        Ids never to return (the request's ``exclude_items`` and basket).
    """
    n = len(item_ids)
    keep = np.ones(n, dtype=bool)
    removed: dict[str, int] = {}

    # Fees, postage and vouchers are never products to recommend.
    mask = np.fromiter((not is_non_product(i) for i in item_ids), dtype=bool, count=n)
    removed["non_product"] = int((keep & ~mask).sum())
    keep &= mask

    # Whatever the client asked us to leave out.
    excluded = set(exclude)
    if excluded:
        mask = np.fromiter((i not in excluded for i in item_ids), dtype=bool, count=n)
        removed["excluded"] = int((keep & ~mask).sum())
        keep &= mask

    # Bought in the last few days: the customer has it already.
    recent = index.recent_items(user_id, as_of=as_of, days=recent_days)
    if recent:
        mask = np.fromiter((i not in recent for i in item_ids), dtype=bool, count=n)
        removed["bought_recently"] = int((keep & ~mask).sum())
        keep &= mask

    # Not sold for a long time: treated as out of the range.
    mask = index.available(item_ids, as_of=as_of, days=unsold_days)
    removed["unavailable"] = int((keep & ~mask).sum())
    keep &= mask
    return RuleOutcome(keep, removed)


def mmr(
    scores: np.ndarray,
    embeddings: np.ndarray | None,
    k: int,
    *,
    weight: float,
) -> np.ndarray:
    """Maximal marginal relevance: pick ``k`` positions, trading score for novelty.

    Each step takes the candidate maximising
    ``weight * relevance - (1 - weight) * max cosine similarity to those already taken``,
    with relevance the score min-max scaled to ``[0, 1]``.

    Parameters
    ----------
    scores
        Shape ``(n,)``, higher is better.
    embeddings
        Shape ``(n, d)``, rows L2-normalised (a zero row is never similar to anything);
        ``None`` ranks by score alone.
    weight
        ``1`` ranks by score alone; ``0`` by novelty alone.

    Returns
    -------
    numpy.ndarray
        Positions into ``scores``, in the chosen order, length ``min(k, n)``.
    """
    n = len(scores)
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if embeddings is None or weight >= 1.0 or n == 1:
        return np.argsort(-scores, kind="stable")[:k]
    span = float(scores.max() - scores.min())
    relevance = (scores - scores.min()) / span if span > 0 else np.ones(n)
    similarity = embeddings @ embeddings.T
    chosen: list[int] = []
    max_sim = np.full(n, -np.inf)
    available = np.ones(n, dtype=bool)
    for _ in range(k):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        gain = weight * relevance - (1.0 - weight) * penalty
        gain[~available] = -np.inf
        best = int(np.argmax(gain))
        chosen.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, similarity[best])
    return np.asarray(chosen, dtype=np.int64)
