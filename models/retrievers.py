"""Candidate retrievers: one interface, six ways to propose items.

Every retriever is fitted on the events strictly before a cut-off and answers
:meth:`Retriever.recommend` with ``(item_ids, scores)``, best first, for a user, for a
session given its items, or for both. A retriever that cannot serve a request (a user it
never saw, no basket) returns empty arrays: choosing a fallback is the blender's job.

==================  ==================================================================
name                proposes
==================  ==================================================================
``popularity``      items with the most distinct buyers lately, time-decayed, per country
``buy_again``       the user's own past items, by how often and how recently
``covisitation``    items bought in the same baskets as the user's or session's items
``als``             implicit ALS on the confidence-weighted ``user_items`` matrix
``content``         MiniLM title embeddings against a profile of the user's items
``session``         co-visitation and content from the current (or last) basket
==================  ==================================================================
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from feature_repo import schema as S
from feature_repo.errors import NotFittedError, SchemaError
from models import limit_blas_threads
from models.data import (
    BUYER,
    IdIndex,
    as_utc,
    baskets,
    before,
    check_id,
    check_ids,
    empty_result,
    net_user_items,
    top_k,
    with_buyer,
)

logger = logging.getLogger(__name__)

Result = tuple[np.ndarray, np.ndarray]


def _decay(age_days: pl.Expr, half_life_days: float | None) -> pl.Expr:
    """Weight ``0.5 ** (age / half_life)``; 1 everywhere when there is no half-life."""
    if half_life_days is None:
        return pl.lit(1.0)
    return (-math.log(2.0) / half_life_days * age_days).exp()


def _age_days(column: str, cutoff: datetime) -> pl.Expr:
    return (pl.lit(cutoff) - pl.col(column)).dt.total_seconds() / 86400.0


class Retriever(ABC):
    """Base class: fit on events before a cut-off, then propose items best first.

    Subclasses implement :meth:`_fit` and :meth:`_recommend`; this class validates the
    input, cuts the events at the cut-off, skips unknown basket items (counting them in
    ``n_unknown_items_``) and applies ``exclude`` and ``n_candidates``.
    """

    name: ClassVar[str] = "retriever"
    #: Whether the retriever personalises from a user's history (unknown users get nothing).
    uses_history: ClassVar[bool] = True

    def fit(
        self,
        events: pl.DataFrame,
        *,
        cutoff: datetime | None = None,
        items: pl.DataFrame | None = None,
    ) -> Self:
        """Fit on the events strictly before ``cutoff``.

        Parameters
        ----------
        events
            Event rows (``feature_repo.schema.EVENT_COLUMNS``).
        cutoff
            Only events before this instant are used; ``None`` uses them all and takes
            the last event's time as the cut-off for recency weights.
        items
            Optional catalogue (``item_id``, ``title``); only the content retrievers read
            it, to serve items that have no sales yet.

        Raises
        ------
        SchemaError
            When the events lack a column, have ids that are not strings, or hold no
            purchase before ``cutoff``.
        """
        start = time.perf_counter()
        events = before(events, cutoff, what=f"{self.name} training events")
        last = events.select(pl.col(S.EVENT_TIMESTAMP).max()).item()
        self.cutoff_: datetime = as_utc(cutoff) if cutoff is not None else last
        self.n_unknown_items_ = 0
        self._fit(events, items)
        limit_blas_threads()
        logger.debug("%s fitted in %.2f s", self.name, time.perf_counter() - start)
        return self

    @abstractmethod
    def _fit(self, events: pl.DataFrame, items: pl.DataFrame | None) -> None: ...

    @abstractmethod
    def _recommend(
        self, user_id: str | None, session_pos: np.ndarray, country: str | None, n: int
    ) -> Result: ...

    @abstractmethod
    def _item_index(self) -> IdIndex: ...

    def _check_fitted(self) -> None:
        if not hasattr(self, "cutoff_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet.\n"
                "Hint: call fit(events, cutoff=...) before recommend."
            )

    def known_user(self, user_id: str) -> bool:
        """Whether the user had purchases before the cut-off (as this retriever saw them)."""
        return False

    def recommend(
        self,
        user_id: str | None,
        *,
        session_items: Sequence[str] = (),
        country: str | None = None,
        n_candidates: int = 100,
        exclude: Collection[str] = (),
    ) -> Result:
        """Propose up to ``n_candidates`` items, best first.

        Parameters
        ----------
        user_id
            The user, or ``None`` for a guest.
        session_items
            Items in the current basket; ids the retriever never saw are skipped and
            counted in ``n_unknown_items_``, not an error.
        country
            The shopper's country, where a retriever can use it.
        n_candidates
            Length of the answer at most.
        exclude
            Items never to propose (e.g. the user's past items).

        Returns
        -------
        item_ids, scores
            ``(n,)`` str and ``(n,)`` float arrays, ``n <= n_candidates``, best first.
        """
        self._check_fitted()
        if user_id is not None:
            check_id(user_id, name="user_id")
        if country is not None:
            check_id(country, name="country")
        if not isinstance(n_candidates, int) or n_candidates < 0:
            raise SchemaError(f"n_candidates={n_candidates!r}; the rule is an int >= 0.")
        items = check_ids(session_items, name="session_items")
        session_pos, n_unknown = self._item_index().positions(items)
        if n_unknown:
            self.n_unknown_items_ += n_unknown
            logger.debug("%s: %d unknown basket item(s) skipped", self.name, n_unknown)
        if n_candidates == 0:
            return empty_result()
        # Ask for more than needed so that excluded items leave the list full.
        item_ids, scores = self._recommend(
            user_id, session_pos, country, n_candidates + len(exclude)
        )
        return top_k(item_ids, scores, n_candidates, exclude=exclude)

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (scikit-learn style), for lineage."""
        return {
            k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")
        }


# ---------------------------------------------------------------------------------------
# Shared pieces


def _user_histories(
    events: pl.DataFrame, cutoff: datetime, *, half_life_days: float, max_items: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per user, their net-bought items (most recent first) and a recency x count weight."""
    net = net_user_items(events).with_columns(
        (
            _decay(_age_days("last_purchase", cutoff), half_life_days)
            * (1.0 + pl.col("n_invoices").cast(pl.Float64).log())
        ).alias("_w")
    )
    grouped = (
        net.sort(S.USER_ID, "last_purchase", S.ITEM_ID, descending=[False, True, False])
        .group_by(S.USER_ID, maintain_order=True)
        .agg(pl.col(S.ITEM_ID).head(max_items), pl.col("_w").head(max_items))
    )
    return {
        u: (np.asarray(i, dtype=object), np.asarray(w, dtype=np.float64))
        for u, i, w in grouped.iter_rows()
    }


def _user_countries(events: pl.DataFrame) -> dict[str, str]:
    """Each known user's country on their latest event."""
    rows = (
        events.filter(pl.col(S.USER_ID).is_not_null() & pl.col(S.COUNTRY).is_not_null())
        .sort(S.EVENT_TIMESTAMP)
        .group_by(S.USER_ID)
        .agg(pl.col(S.COUNTRY).last())
    )
    return dict(rows.iter_rows())


# ---------------------------------------------------------------------------------------
# Popularity


class PopularityRetriever(Retriever):
    """Items by distinct buyers over a recent window, optionally time-decayed, per country.

    Parameters
    ----------
    window_days
        Only purchases in the ``window_days`` before the cut-off count.
    half_life_days
        A buyer's weight halves every ``half_life_days`` of age (of their latest purchase
        of the item); ``None`` counts every distinct buyer once (the baseline).
    per_country
        Rank by the buyers of the request's country first (the user's own country when
        the request names none), then fill with the overall ranking.
    """

    name = "popularity"
    uses_history = False

    def __init__(
        self,
        *,
        window_days: int = 30,
        half_life_days: float | None = 14.0,
        per_country: bool = True,
        min_country_buyers: int = 20,
    ) -> None:
        self.window_days = window_days
        self.half_life_days = half_life_days
        self.per_country = per_country
        self.min_country_buyers = min_country_buyers

    def _fit(self, events: pl.DataFrame, items: pl.DataFrame | None) -> None:
        # Step 1: each distinct buyer's latest purchase of each item inside the window.
        start = self.cutoff_ - timedelta(days=self.window_days)
        recent = with_buyer(
            events.filter(
                (pl.col(S.EVENT_TYPE) == S.PURCHASE) & (pl.col(S.EVENT_TIMESTAMP) >= start)
            )
        )
        if recent.is_empty():
            # Nothing in the window: fall back to the whole history rather than no list.
            logger.warning(
                "popularity: no purchase in the %d days before %s; using all history",
                self.window_days,
                self.cutoff_.date(),
            )
            recent = with_buyer(events.filter(pl.col(S.EVENT_TYPE) == S.PURCHASE))
        last = recent.group_by(BUYER, S.ITEM_ID, S.COUNTRY).agg(
            pl.col(S.EVENT_TIMESTAMP).max().alias("_last")
        )
        last = last.with_columns(
            _decay(_age_days("_last", self.cutoff_), self.half_life_days).alias("_w")
        )

        # Step 2: overall scores, and per-country scores where the country has enough buyers.
        per_buyer = last.group_by(BUYER, S.ITEM_ID).agg(pl.col("_w").max())
        overall = (
            per_buyer.group_by(S.ITEM_ID)
            .agg(pl.col("_w").sum())
            .sort("_w", S.ITEM_ID, descending=[True, False])
        )
        self.items_ = IdIndex.from_ids(events[S.ITEM_ID].unique().to_list())
        self.item_ids_ = overall[S.ITEM_ID].to_numpy().astype(object)
        self.scores_ = overall["_w"].to_numpy().astype(np.float64)
        self.by_country_: dict[str, Result] = {}
        if self.per_country:
            buyers = last.group_by(S.COUNTRY).agg(pl.col(BUYER).n_unique().alias("_n"))
            big = buyers.filter(pl.col("_n") >= self.min_country_buyers)[S.COUNTRY].to_list()
            per = (
                last.filter(pl.col(S.COUNTRY).is_in(big))
                .group_by(S.COUNTRY, S.ITEM_ID)
                .agg(pl.col("_w").sum())
                .sort(S.COUNTRY, "_w", S.ITEM_ID, descending=[False, True, False])
                .group_by(S.COUNTRY, maintain_order=True)
                .agg(pl.col(S.ITEM_ID), pl.col("_w"))
            )
            for country, ids, scores in per.iter_rows():
                self.by_country_[country] = (
                    np.asarray(ids, dtype=object),
                    np.asarray(scores, dtype=np.float64),
                )
        self.user_country_ = _user_countries(events) if self.per_country else {}

    def _item_index(self) -> IdIndex:
        return self.items_

    def _recommend(
        self, user_id: str | None, session_pos: np.ndarray, country: str | None, n: int
    ) -> Result:
        if country is None and user_id is not None:
            country = self.user_country_.get(user_id)
        overall_ids, overall_scores = self.item_ids_[:n], self.scores_[:n] / self.scores_[0]
        local = self.by_country_.get(country) if country is not None else None
        if local is None:
            return overall_ids, overall_scores
        # The country's list first (scores above 1), then the overall list as filler.
        local_ids, local_scores = local[0][:n], local[1][:n]
        rest = ~np.isin(overall_ids, local_ids)
        ids = np.concatenate([local_ids, overall_ids[rest]])
        scores = np.concatenate([1.0 + local_scores / local_scores[0], overall_scores[rest]])
        return ids, scores


# ---------------------------------------------------------------------------------------
# Buy again


class BuyAgainRetriever(Retriever):
    """The user's own past items, scored by invoice count and recency.

    A user-item pair scores ``sum over its invoices of 0.5 ** (age / half_life_days)``;
    pairs that were fully cancelled (net quantity not positive) are left out.

    Parameters
    ----------
    half_life_days
        Age at which an invoice counts half.
    """

    name = "buy_again"

    def __init__(self, *, half_life_days: float = 60.0) -> None:
        self.half_life_days = half_life_days

    def _fit(self, events: pl.DataFrame, items: pl.DataFrame | None) -> None:
        # Step 1: invoices per user-item, each with its time.
        purchases = events.filter(
            (pl.col(S.EVENT_TYPE) == S.PURCHASE) & pl.col(S.USER_ID).is_not_null()
        )
        invoices = purchases.group_by(S.USER_ID, S.ITEM_ID, S.SESSION_ID).agg(
            pl.col(S.EVENT_TIMESTAMP).max().alias("_t")
        )
        scored = invoices.group_by(S.USER_ID, S.ITEM_ID).agg(
            _decay(_age_days("_t", self.cutoff_), self.half_life_days).sum().alias("_s")
        )

        # Step 2: keep only what the user still holds after cancellations.
        held = net_user_items(events).select(S.USER_ID, S.ITEM_ID)
        scored = scored.join(held, on=[S.USER_ID, S.ITEM_ID], how="semi")
        grouped = (
            scored.sort(S.USER_ID, "_s", S.ITEM_ID, descending=[False, True, False])
            .group_by(S.USER_ID, maintain_order=True)
            .agg(pl.col(S.ITEM_ID), pl.col("_s"))
        )
        self.by_user_: dict[str, Result] = {
            u: (np.asarray(i, dtype=object), np.asarray(s, dtype=np.float64))
            for u, i, s in grouped.iter_rows()
        }
        self.items_ = IdIndex.from_ids(events[S.ITEM_ID].unique().to_list())

    def _item_index(self) -> IdIndex:
        return self.items_

    def known_user(self, user_id: str) -> bool:
        return user_id in self.by_user_

    def _recommend(
        self, user_id: str | None, session_pos: np.ndarray, country: str | None, n: int
    ) -> Result:
        if user_id is None or user_id not in self.by_user_:
            return empty_result()
        ids, scores = self.by_user_[user_id]
        return ids[:n], scores[:n]


# ---------------------------------------------------------------------------------------
# Co-visitation


class CoVisitationRetriever(Retriever):
    """Items bought in the same baskets, with a bounded neighbourhood per item.

    Two items in one basket of ``m`` distinct items add ``1 / log2(1 + m)`` to their
    pair (big wholesale baskets say less about each pair); the pair sums are divided by
    ``sqrt(n_i * n_j)`` (baskets holding each item) and each item keeps its
    ``n_neighbours`` best neighbours.

    Parameters
    ----------
    n_neighbours
        Neighbours kept per item (bounds memory and request time).
    history_items
        For a user, the most recent items of their history used as seeds.
    half_life_days
        Recency weight of a user's history items.
    """

    name = "covisitation"

    def __init__(
        self, *, n_neighbours: int = 100, history_items: int = 30, half_life_days: float = 60.0
    ) -> None:
        self.n_neighbours = n_neighbours
        self.history_items = history_items
        self.half_life_days = half_life_days

    def _fit(self, events: pl.DataFrame, items: pl.DataFrame | None) -> None:
        # Step 1: the basket x item incidence matrix, rows weighted by basket size.
        self.items_ = IdIndex.from_ids(events[S.ITEM_ID].unique().to_list())
        table = baskets(events)
        rows, cols, weights = [], [], []
        for r, basket in enumerate(table["items"].to_list()):
            pos, _ = self.items_.positions(basket)
            rows.append(np.full(len(pos), r))
            cols.append(pos)
            weights.append(np.full(len(pos), 1.0 / math.log2(1.0 + len(pos))))
        n_items = len(self.items_)
        if rows:
            r_, c_, w_ = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
        else:
            r_, c_, w_ = (np.zeros(0, dtype=np.int64),) * 2 + (np.zeros(0),)
        incidence = sp.csr_matrix((np.ones_like(w_), (r_, c_)), shape=(len(table), n_items))
        weighted = sp.csr_matrix((w_, (r_, c_)), shape=(len(table), n_items))

        # Step 2: pair sums, normalised by item frequency, diagonal removed.
        pairs = (weighted.T @ incidence).tocsr().astype(np.float64)
        pairs.setdiag(0.0)
        pairs.eliminate_zeros()
        counts = np.asarray(incidence.sum(axis=0)).ravel()
        norm = 1.0 / np.sqrt(np.maximum(counts, 1.0))
        pairs = sp.diags(norm) @ pairs @ sp.diags(norm)

        # Step 3: keep each item's best neighbours only.
        self.neighbours_ = _keep_top_per_row(pairs.tocsr(), self.n_neighbours)
        self.histories_ = _user_histories(
            events, self.cutoff_, half_life_days=self.half_life_days, max_items=self.history_items
        )

    def _item_index(self) -> IdIndex:
        return self.items_

    def known_user(self, user_id: str) -> bool:
        return user_id in self.histories_

    def seed_scores(self, positions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Dense ``(n_items,)`` scores: weighted sum of the seeds' neighbour rows."""
        if len(positions) == 0:
            return np.zeros(len(self.items_))
        rows = self.neighbours_[positions]
        return np.asarray(rows.T @ weights).ravel()

    def _recommend(
        self, user_id: str | None, session_pos: np.ndarray, country: str | None, n: int
    ) -> Result:
        seeds, weights = [session_pos], [np.full(len(session_pos), 1.0)]
        if user_id is not None and user_id in self.histories_:
            hist_ids, hist_w = self.histories_[user_id]
            pos, _ = self.items_.positions(hist_ids.tolist())
            seeds.append(pos)
            # A basket speaks for now; history is scaled so that it never outweighs it.
            scale = 0.5 if len(session_pos) else 1.0
            weights.append(scale * hist_w / max(hist_w.max(), 1e-12))
        positions = np.concatenate(seeds).astype(np.int64)
        if len(positions) == 0:
            return empty_result()
        scores = self.seed_scores(positions, np.concatenate(weights))
        nonzero = np.flatnonzero(scores > 0)
        return self.items_.ids[nonzero], scores[nonzero]


def _keep_top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """A copy of ``matrix`` keeping the ``k`` largest entries of each row."""
    indptr, indices, data = [0], [], []
    for row in range(matrix.shape[0]):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        values, cols = matrix.data[lo:hi], matrix.indices[lo:hi]
        if len(values) > k:
            keep = np.argpartition(-values, k - 1)[:k]
            values, cols = values[keep], cols[keep]
        indices.append(cols)
        data.append(values)
        indptr.append(indptr[-1] + len(values))
    return sp.csr_matrix(
        (
            np.concatenate(data) if data else np.zeros(0),
            np.concatenate(indices) if indices else np.zeros(0, dtype=np.int32),
            np.asarray(indptr),
        ),
        shape=matrix.shape,
    )


# ---------------------------------------------------------------------------------------
# Implicit ALS


def check_user_items(user_items: Any, n_users: int, n_items: int) -> sp.csr_matrix:
    """Return ``user_items`` as a float32 CSR matrix of shape ``(n_users, n_items)``.

    Another sparse format is converted; a dense array or a matrix of another shape is
    rejected, naming the expected orientation.

    Raises
    ------
    SchemaError
        When the shape is not ``(n_users, n_items)``.
    """
    if not sp.issparse(user_items):
        raise SchemaError(
            f"user_items is a {type(user_items).__name__}; the rule is a scipy sparse matrix "
            f"of users x items ({n_users}, {n_items}).\nHint: scipy.sparse.csr_matrix(...)."
        )
    shape = tuple(user_items.shape)
    if shape != (n_users, n_items):
        hint = (
            "it looks transposed (items x users); pass user_items.T.tocsr()"
            if shape == (n_items, n_users)
            else "build it from the same events as the user and item indexes"
        )
        raise SchemaError(
            f"user_items has shape {shape}; the expected orientation is users x items "
            f"({n_users} users, {n_items} items).\nHint: {hint}."
        )
    return sp.csr_matrix(user_items, dtype=np.float32)


class ALSRetriever(Retriever):
    """Implicit alternating least squares on a confidence-weighted ``user_items`` matrix.

    Confidence of a user-item pair is ``alpha * log1p(net_quantity)``, after
    cancellations are netted out. Users who arrive after fitting (or a guest's basket)
    get factors computed on the fly from their items (``recalculate_user``).

    Parameters
    ----------
    factors, regularization, alpha, iterations
        As in ``implicit.als.AlternatingLeastSquares``.
    random_state
        Seed of the factor initialisation.
    num_threads
        Threads for fitting; 0 means all cores.
    """

    name = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        random_state: int = 42,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _fit(self, events: pl.DataFrame, items: pl.DataFrame | None) -> None:
        # Step 1: indexes and the users x items confidence matrix.
        net = net_user_items(events)
        self.users_ = IdIndex.from_ids(net[S.USER_ID].to_list())
        self.items_ = IdIndex.from_ids(events[S.ITEM_ID].unique().to_list())
        rows, _ = self.users_.positions(net[S.USER_ID].to_list())
        cols, _ = self.items_.positions(net[S.ITEM_ID].to_list())
        values = np.log1p(net["net_quantity"].to_numpy().astype(np.float64))
        matrix = sp.csr_matrix((values, (rows, cols)), shape=(len(self.users_), len(self.items_)))
        self.fit_matrix(matrix)

    def fit_matrix(self, user_items: Any) -> Self:
        """Fit the factors on ``user_items`` (users x items, indexed like ``users_``)."""
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        self.user_items_ = check_user_items(user_items, len(self.users_), len(self.items_))
        # implicit runs its own threads; BLAS threads on top of them only contend.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.random_state,
                num_threads=self.num_threads,
            )
            model.fit(self.user_items_, show_progress=False)
        self.model_ = model
        return self

    def _item_index(self) -> IdIndex:
        return self.items_

    def known_user(self, user_id: str) -> bool:
        return user_id in self.users_

    def _recommend(
        self, user_id: str | None, session_pos: np.ndarray, country: str | None, n: int
    ) -> Result:
        row = self.users_.get(user_id) if user_id is not None else None
        if row is not None and len(session_pos) == 0:
            vector = self.model_.user_factors[row]
        elif len(session_pos) or row is not None:
            # A new user or a basket: solve for the user's factors from their items.
            liked = (
                self.user_items_[row]
                if row is not None
                else sp.csr_matrix((1, len(self.items_)), dtype=np.float32)
            )
            liked = liked.tolil()
            liked[0, session_pos] = np.maximum(liked[0, session_pos].toarray(), 1.0)
            vector = np.asarray(self.model_.recalculate_user(0, liked.tocsr())).ravel()
        else:
            return empty_result()
        scores = self.model_.item_factors @ vector
        return self.items_.ids, np.asarray(scores, dtype=np.float64)


# ---------------------------------------------------------------------------------------
# Content


class ContentRetriever(Retriever):
    """MiniLM title embeddings scored against a profile of the user's (or basket's) items.

    The catalogue is the ``items`` table given to :meth:`fit` (so items with no sales yet
    are served), else the items seen in the events. A profile is the recency-weighted
    mean of the unit vectors of the user's items, plus the basket's items.

    Parameters
    ----------
    history_items
        Most recent history items in a profile.
    half_life_days
        Recency weight of a history item.
    cache_dir
        Folder of the embedding cache (``None``: memory only).
    """

    name = "content"

    def __init__(
        self,
        *,
        history_items: int = 50,
        half_life_days: float = 60.0,
        cache_dir: Path | None = None,
        progress: bool = False,
    ) -> None:
        self.history_items = history_items
        self.half_life_days = half_life_days
        self.cache_dir = cache_dir
        self.progress = progress

    def _fit(self, events: pl.DataFrame, items: pl.DataFrame | None) -> None:
        from models.embeddings import TitleEncoder

        # Step 1: the catalogue and its titles.
        if items is not None:
            catalogue = items.select(S.ITEM_ID, S.TITLE)
        else:
            title = "description" if "description" in events.columns else S.ITEM_ID
            catalogue = (
                events.sort(S.EVENT_TIMESTAMP)
                .group_by(S.ITEM_ID)
                .agg(pl.col(title).drop_nulls().last().alias(S.TITLE))
            )
        catalogue = catalogue.with_columns(
            pl.col(S.TITLE).fill_null(pl.col(S.ITEM_ID)).cast(pl.String)
        ).sort(S.ITEM_ID)
        self.items_ = IdIndex.from_ids(catalogue[S.ITEM_ID].to_list())
        self.titles_: dict[str, str] = dict(catalogue.select(S.ITEM_ID, S.TITLE).iter_rows())

        # Step 2: unit vectors (cached by title) and user histories.
        encoder = TitleEncoder(self.cache_dir, progress=self.progress)
        self.vectors_ = encoder.encode([self.titles_[i] for i in self.items_.ids.tolist()])
        self.histories_ = _user_histories(
            events, self.cutoff_, half_life_days=self.half_life_days, max_items=self.history_items
        )

    def _item_index(self) -> IdIndex:
        return self.items_

    def known_user(self, user_id: str) -> bool:
        return user_id in self.histories_

    def add_items(self, titles: dict[str, str]) -> None:
        """Add new catalogue items (id -> title) so they can be proposed at once."""
        self._check_fitted()
        from models.embeddings import TitleEncoder

        new = {i: t for i, t in titles.items() if i not in self.items_}
        if not new:
            return
        self.titles_.update(new)
        ids = np.concatenate([self.items_.ids, np.asarray(list(new), dtype=object)])
        vectors = TitleEncoder(self.cache_dir).encode(list(new.values()))
        order = np.argsort(ids.astype(str), kind="stable")
        self.items_ = IdIndex(ids[order])
        self.vectors_ = np.vstack([self.vectors_, vectors])[order]

    def profile(self, user_id: str | None, session_pos: np.ndarray) -> np.ndarray | None:
        """The unit profile vector, or ``None`` when there is nothing to build it from."""
        parts, weights = [], []
        if len(session_pos):
            parts.append(self.vectors_[session_pos])
            weights.append(np.full(len(session_pos), 1.0))
        if user_id is not None and user_id in self.histories_:
            hist_ids, hist_w = self.histories_[user_id]
            pos, _ = self.items_.positions(hist_ids.tolist())
            if len(pos):
                parts.append(self.vectors_[pos])
                w = hist_w[: len(pos)] if len(pos) == len(hist_w) else np.ones(len(pos))
                weights.append(w / max(w.max(), 1e-12) * (0.5 if len(session_pos) else 1.0))
        if not parts:
            return None
        vector = np.concatenate(weights) @ np.vstack(parts)
        norm = float(np.linalg.norm(vector))
        return (vector / norm).astype(np.float32) if norm > 0 else None

    def _recommend(
        self, user_id: str | None, session_pos: np.ndarray, country: str | None, n: int
    ) -> Result:
        vector = self.profile(user_id, session_pos)
        if vector is None:
            return empty_result()
        return self.items_.ids, (self.vectors_ @ vector).astype(np.float64)


# ---------------------------------------------------------------------------------------
# Session


class SessionRetriever(Retriever):
    """For guests and the current basket: co-visitation and content of the basket's items.

    Without a basket, a known user's most recent basket before the cut-off stands in.
    The two scores are each scaled to a maximum of 1 and mixed with ``covisitation_weight``.

    Parameters
    ----------
    covisitation_weight
        Share of the co-visitation score in the mix; the rest is title similarity.
    n_neighbours
        Neighbourhood size of the co-visitation part.
    """

    name = "session"
    uses_history = False

    def __init__(
        self,
        *,
        covisitation_weight: float = 0.7,
        n_neighbours: int = 100,
        cache_dir: Path | None = None,
    ) -> None:
        self.covisitation_weight = covisitation_weight
        self.n_neighbours = n_neighbours
        self.cache_dir = cache_dir

    def _fit(self, events: pl.DataFrame, items: pl.DataFrame | None) -> None:
        # Step 1: the two parts, fitted on the same events (history is not used by either).
        self.covisitation_ = CoVisitationRetriever(n_neighbours=self.n_neighbours, history_items=0)
        self.covisitation_.fit(events, cutoff=self.cutoff_ + timedelta(microseconds=1))
        self.content_ = ContentRetriever(history_items=0, cache_dir=self.cache_dir)
        self.content_.fit(events, cutoff=self.cutoff_ + timedelta(microseconds=1), items=items)

        # Step 2: each user's last basket, the stand-in when a request brings none.
        purchases = events.filter(
            (pl.col(S.EVENT_TYPE) == S.PURCHASE) & pl.col(S.USER_ID).is_not_null()
        )
        last_session = (
            purchases.sort(S.EVENT_TIMESTAMP).group_by(S.USER_ID).agg(pl.col(S.SESSION_ID).last())
        )
        last_items = purchases.join(last_session, on=[S.USER_ID, S.SESSION_ID], how="semi")
        grouped = last_items.group_by(S.USER_ID).agg(pl.col(S.ITEM_ID).unique().sort())
        self.last_basket_: dict[str, list[str]] = dict(grouped.iter_rows())
        self.items_ = self.content_.items_
        # Where each co-visitation item sits in the content catalogue (-1: not there).
        positions = (self.items_.get(i) for i in self.covisitation_.items_.ids.tolist())
        self.covis_to_items_ = np.asarray(
            [-1 if p is None else p for p in positions], dtype=np.int64
        )

    def _item_index(self) -> IdIndex:
        return self.items_

    def known_user(self, user_id: str) -> bool:
        return user_id in self.last_basket_

    def _recommend(
        self, user_id: str | None, session_pos: np.ndarray, country: str | None, n: int
    ) -> Result:
        basket = self.items_.ids[session_pos].tolist()
        if not basket and user_id is not None:
            basket = self.last_basket_.get(user_id, [])
        if not basket:
            return empty_result()
        covis_pos, _ = self.covisitation_.items_.positions(basket)
        covis = self.covisitation_.seed_scores(covis_pos, np.ones(len(covis_pos)))
        content_pos, _ = self.content_.items_.positions(basket)
        profile = self.content_.profile(None, content_pos)

        # Mix on the content catalogue (a superset: it also holds items with no sales).
        scores = np.zeros(len(self.items_))
        if covis.max(initial=0.0) > 0:
            mapped = self.covis_to_items_ >= 0
            scores[self.covis_to_items_[mapped]] += (
                self.covisitation_weight * covis[mapped] / covis.max()
            )
        if profile is not None:
            similarity = np.clip(self.content_.vectors_ @ profile, 0.0, None)
            scores += (1.0 - self.covisitation_weight) * similarity
        return self.items_.ids, scores


RETRIEVERS: dict[str, type[Retriever]] = {
    cls.name: cls
    for cls in (
        PopularityRetriever,
        BuyAgainRetriever,
        CoVisitationRetriever,
        ALSRetriever,
        ContentRetriever,
        SessionRetriever,
    )
}
