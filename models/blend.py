"""Blending: the union of the retrievers' proposals, with quotas and per-candidate features.

Cold-start policy, applied per request, in this order:

1. a user some history-based retriever knows: every retriever is asked (``personalised``);
2. an unknown user (or a guest) with a basket: the retrievers that work from a basket
   (session, co-visitation, content, ALS with factors solved from the basket) plus
   popularity to fill (``session``);
3. otherwise: popularity for the request's country (``popularity``).

An item id in the basket that no retriever knows is skipped and counted
(``n_unknown_items_``), never an error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from feature_repo import schema as S
from feature_repo.errors import NotFittedError
from models.data import IdIndex, as_utc, check_id, check_ids, net_user_items
from models.retrievers import ContentRetriever, Retriever

logger = logging.getLogger(__name__)

PERSONALISED = "personalised"
SESSION = "session"
POPULARITY = "popularity"
POLICIES: tuple[str, ...] = (PERSONALISED, SESSION, POPULARITY)

# User-item features computed from the events before the cut-off.
UI_TIMES_BOUGHT = "ui_times_bought"
UI_DAYS_SINCE_BOUGHT = "ui_days_since_bought"
UI_TITLE_SIMILARITY = "ui_title_similarity"
UI_PRICE_RATIO = "ui_price_ratio"
USER_ITEM_FEATURES: tuple[str, ...] = (
    UI_TIMES_BOUGHT,
    UI_DAYS_SINCE_BOUGHT,
    UI_TITLE_SIMILARITY,
    UI_PRICE_RATIO,
)
N_SOURCES = "n_sources"
BLEND_SCORE = "blend_score"

# Default share of the candidate list reserved for each retriever's best items.
DEFAULT_QUOTAS: dict[str, float] = {
    "buy_again": 0.25,
    "popularity": 0.15,
    "covisitation": 0.15,
    "als": 0.15,
    "content": 0.1,
    "session": 0.1,
}
# Weights of each source in the fused order (reciprocal-rank fusion).
DEFAULT_WEIGHTS: dict[str, float] = {
    "buy_again": 3.0,
    "popularity": 1.0,
    "covisitation": 1.0,
    "als": 1.0,
    "content": 0.5,
    "session": 0.7,
}
_RRF_OFFSET = 10.0


@dataclass(frozen=True)
class Candidates:
    """The candidates of one request.

    Attributes
    ----------
    item_ids
        ``(n,)`` str, in blended order (best first).
    features
        ``(n, f)`` frame: per retriever ``score_<name>`` and ``rank_<name>`` (NaN when it
        did not propose the item), ``n_sources``, ``blend_score`` and the user-item
        features.
    sources
        For each candidate, the retriever names that proposed it.
    policy
        Which cold-start branch served the request: ``personalised``, ``session`` or
        ``popularity``.
    n_unknown_items
        Basket ids no retriever knows (skipped).
    new_items_only
        Whether the user's past items were left out (ranked by the new-items ranker).
    proposals
        Each asked retriever's own ``(item_ids, scores)``, best first.
    """

    item_ids: np.ndarray
    features: pd.DataFrame
    sources: list[list[str]]
    policy: str = PERSONALISED
    n_unknown_items: int = 0
    new_items_only: bool = False
    proposals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def score_column(name: str) -> str:
    return f"score_{name}"


def rank_column(name: str) -> str:
    return f"rank_{name}"


class UserItemFeatures:
    """Features of a (user, item) pair from the events before the cut-off.

    ``ui_times_bought`` (invoices holding the item), ``ui_days_since_bought``,
    ``ui_title_similarity`` (cosine of the item's title to the user's history profile) and
    ``ui_price_ratio`` (item's mean price over the user's median unit price paid).
    """

    def fit(
        self, events: pl.DataFrame, *, cutoff: datetime, content: ContentRetriever
    ) -> UserItemFeatures:
        cutoff = as_utc(cutoff)
        net = net_user_items(events.filter(pl.col(S.EVENT_TIMESTAMP) < cutoff))
        days = (pl.lit(cutoff) - pl.col("last_purchase")).dt.total_seconds() / 86400.0
        net = net.with_columns(days.alias("_days"))
        self.bought_: dict[str, dict[str, tuple[int, float]]] = {}
        for user, items, counts, ages in (
            net.group_by(S.USER_ID)
            .agg(pl.col(S.ITEM_ID), pl.col("n_invoices"), pl.col("_days"))
            .iter_rows()
        ):
            self.bought_[user] = dict(zip(items, zip(counts, ages, strict=True), strict=True))
        purchases = events.filter(
            (pl.col(S.EVENT_TYPE) == S.PURCHASE) & (pl.col(S.EVENT_TIMESTAMP) < cutoff)
        )
        self.user_price_: dict[str, float] = dict(
            purchases.filter(pl.col(S.USER_ID).is_not_null())
            .group_by(S.USER_ID)
            .agg(pl.col(S.PRICE).median())
            .iter_rows()
        )
        self.item_price_: dict[str, float] = dict(
            purchases.group_by(S.ITEM_ID).agg(pl.col(S.PRICE).mean()).iter_rows()
        )
        self.content_ = content
        return self

    def past_items(self, user_id: str) -> set[str]:
        """Items the user bought (net of cancellations) before the cut-off."""
        return set(self.bought_.get(user_id, {}))

    def transform(
        self, user_id: str | None, item_ids: np.ndarray, session_pos: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Columns of the four features for ``item_ids`` (NaN where undefined)."""
        if not hasattr(self, "bought_"):
            raise NotFittedError("UserItemFeatures is not fitted.\nHint: call fit first.")
        n = len(item_ids)
        bought = self.bought_.get(user_id, {}) if user_id is not None else {}
        times = np.zeros(n)
        since = np.full(n, np.nan)
        for j, item in enumerate(item_ids.tolist()):
            hit = bought.get(item)
            if hit is not None:
                times[j], since[j] = hit
        similarity = np.full(n, np.nan)
        profile = self.content_.profile(user_id, session_pos)
        if profile is not None:
            pos = np.asarray([self.content_.items_.get(i) for i in item_ids.tolist()], dtype=object)
            known = np.asarray([p is not None for p in pos], dtype=bool)
            if known.any():
                vectors = self.content_.vectors_[pos[known].astype(np.int64)]
                similarity[known] = vectors @ profile
        price = np.asarray([self.item_price_.get(i, np.nan) for i in item_ids.tolist()])
        usual = self.user_price_.get(user_id, np.nan) if user_id is not None else np.nan
        ratio = price / usual if usual and np.isfinite(usual) and usual > 0 else np.full(n, np.nan)
        return {
            UI_TIMES_BOUGHT: times,
            UI_DAYS_SINCE_BOUGHT: since,
            UI_TITLE_SIMILARITY: similarity,
            UI_PRICE_RATIO: ratio,
        }


class Blender:
    """Union of fitted retrievers' proposals, with quotas and fused order.

    Parameters
    ----------
    retrievers
        Fitted retrievers by name; must include ``popularity`` (the last fallback).
    user_item
        Fitted user-item features added to every candidate.
    quotas
        Share of ``n_candidates`` reserved for each retriever's best items.
    weights
        Weight of each retriever in the fused (reciprocal-rank) order.
    """

    def __init__(
        self,
        retrievers: Mapping[str, Retriever],
        user_item: UserItemFeatures,
        *,
        quotas: Mapping[str, float] | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        if POPULARITY not in retrievers:
            raise ValueError(
                f"retrievers={sorted(retrievers)} lack 'popularity'; the rule is that the "
                "last fallback is always present."
            )
        self.retrievers = dict(retrievers)
        self.user_item = user_item
        self.quotas = dict(quotas or DEFAULT_QUOTAS)
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        self.n_unknown_items_ = 0
        catalogue: set[str] = set()
        for retriever in self.retrievers.values():
            catalogue.update(retriever._item_index().ids.tolist())
        self.catalogue_ = IdIndex.from_ids(catalogue)

    @property
    def source_names(self) -> list[str]:
        return list(self.retrievers)

    @property
    def feature_names(self) -> list[str]:
        """Columns of :attr:`Candidates.features`, in order."""
        names: list[str] = []
        for name in self.retrievers:
            names += [score_column(name), rank_column(name)]
        return [*names, N_SOURCES, BLEND_SCORE, *USER_ITEM_FEATURES]

    def known_user(self, user_id: str) -> bool:
        return any(r.uses_history and r.known_user(user_id) for r in self.retrievers.values())

    def policy(self, user_id: str | None, session_items: Sequence[str]) -> str:
        if user_id is not None and self.known_user(user_id):
            return PERSONALISED
        if session_items:
            return SESSION
        return POPULARITY

    def candidates(
        self,
        *,
        user_id: str | None,
        session_items: Sequence[str] = (),
        country: str | None = None,
        n_candidates: int = 200,
        exclude: Collection[str] = (),
        new_items_only: bool = False,
    ) -> Candidates:
        """Blend the retrievers' proposals for one request (see the module's policy).

        ``new_items_only`` adds the user's past items (net of cancellations) to ``exclude``.
        """
        if user_id is not None:
            check_id(user_id, name="user_id")
        if new_items_only and user_id is not None:
            exclude = set(exclude) | self.user_item.past_items(user_id)
        basket = check_ids(session_items, name="session_items")
        known_basket = [i for i in basket if i in self.catalogue_]
        n_unknown = len(basket) - len(known_basket)
        if n_unknown:
            self.n_unknown_items_ += n_unknown
            logger.warning("%d unknown basket item id(s) skipped", n_unknown)
        policy = self.policy(user_id, known_basket)

        # Step 1: ask the retrievers the policy allows.
        if policy == POPULARITY:
            names = [POPULARITY]
        elif policy == SESSION:
            names = [n for n, r in self.retrievers.items() if n != "buy_again"]
        else:
            names = list(self.retrievers)
        proposals: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in names:
            proposals[name] = self.retrievers[name].recommend(
                user_id,
                session_items=known_basket,
                country=country,
                n_candidates=n_candidates,
                exclude=exclude,
            )

        # Step 2: fused score per item, and each source's rank and score.
        fused: dict[str, float] = {}
        ranks: dict[str, dict[str, int]] = {}
        scores: dict[str, dict[str, float]] = {}
        for name, (ids, values) in proposals.items():
            weight = self.weights.get(name, 1.0)
            ranks[name] = {}
            scores[name] = {}
            for rank, (item, value) in enumerate(zip(ids.tolist(), values.tolist(), strict=True)):
                fused[item] = fused.get(item, 0.0) + weight / (_RRF_OFFSET + rank + 1)
                ranks[name][item] = rank + 1
                scores[name][item] = value

        # Step 3: each source's quota first, then the best fused items fill the rest.
        chosen: dict[str, None] = {}
        for name, (ids, _) in proposals.items():
            quota = math.ceil(self.quotas.get(name, 0.0) * n_candidates)
            for item in ids[:quota].tolist():
                if len(chosen) >= n_candidates:
                    break
                chosen.setdefault(item, None)
        for item in sorted(fused, key=lambda i: (-fused[i], i)):
            if len(chosen) >= n_candidates:
                break
            chosen.setdefault(item, None)
        item_ids = np.asarray(sorted(chosen, key=lambda i: (-fused[i], i)), dtype=object)

        # Step 4: features per candidate.
        return Candidates(
            item_ids=item_ids,
            features=self._features(user_id, item_ids, ranks, scores, fused, known_basket),
            sources=[[n for n in proposals if item in ranks[n]] for item in item_ids.tolist()],
            policy=policy,
            n_unknown_items=n_unknown,
            new_items_only=new_items_only,
            proposals=proposals,
        )

    def _features(
        self,
        user_id: str | None,
        item_ids: np.ndarray,
        ranks: Mapping[str, Mapping[str, int]],
        scores: Mapping[str, Mapping[str, float]],
        fused: Mapping[str, float],
        basket: Sequence[str],
    ) -> pd.DataFrame:
        items = item_ids.tolist()
        columns: dict[str, Any] = {}
        n_sources = np.zeros(len(items))
        for name in self.retrievers:
            r = ranks.get(name, {})
            s = scores.get(name, {})
            rank = np.asarray([r.get(i, np.nan) for i in items], dtype=np.float64)
            columns[score_column(name)] = np.asarray(
                [s.get(i, np.nan) for i in items], dtype=np.float64
            )
            columns[rank_column(name)] = rank
            n_sources += np.isfinite(rank)
        columns[N_SOURCES] = n_sources
        columns[BLEND_SCORE] = np.asarray([fused[i] for i in items], dtype=np.float64)
        content = self.user_item.content_
        session_pos, _ = content.items_.positions(list(basket))
        columns.update(self.user_item.transform(user_id, item_ids, session_pos))
        names = self.feature_names
        matrix = np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in names])
        return pd.DataFrame(matrix.reshape(len(items), len(names)), columns=names)
