"""The online recommendation path, independent of the HTTP layer.

retrieve -> business rules -> online features (Redis) -> rank -> diversity -> answer,
with a non-personalised answer (recent popularity) whenever the personalised one cannot
be given: unknown user, opted-out user, Redis down or slower than its budget, or no
candidate left. Every answer is written to the audit log.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from bentos.audit import AuditLog, load_salt
from bentos.config import ServeConfig
from bentos.online import FeastRedisReader, OnlineStoreError, as_arrays, make_client, view_layouts
from bentos.optout import OptOutStore
from bentos.rules import PurchaseIndex, apply_rules, is_non_product, mmr
from bentos.schemas import (
    Contribution,
    Fallback,
    OptOutResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    SimilarItem,
    SimilarItemsRequest,
    SimilarItemsResponse,
)
from bentos.scoring import FastScorer, rank_order
from feature_repo import schema as S
from feature_repo.errors import ConfigError, NotFoundError
from feature_repo.timesplit import midnight_utc

if TYPE_CHECKING:
    from models.api import Candidates, Recommender

logger = logging.getLogger(__name__)

POPULAR_SOURCE = "popularity"
STAGES: tuple[str, ...] = (
    "opt_out",
    "candidates",
    "rules",
    "features",
    "session_features",
    "rank",
    "diversity",
    "explain",
    "fallback",
    "audit",
    "total",
)


@dataclass
class StageTimer:
    """Seconds spent in each stage of one request."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


@dataclass
class EngineHooks:
    """Callbacks the HTTP layer uses to count things (Prometheus); no-ops by default."""

    on_stages: Callable[[str, Mapping[str, float]], None] = lambda endpoint, seconds: None
    on_fallback: Callable[[str], None] = lambda reason: None
    on_redis: Callable[[bool], None] = lambda up: None


def _subset_candidates(candidates: Candidates, keep: np.ndarray) -> Candidates:
    """The candidates where ``keep`` is true, features included (other fields kept)."""
    features = candidates.features
    if hasattr(features, "iloc"):
        features = features.iloc[np.flatnonzero(keep)].reset_index(drop=True)
    else:
        features = np.asarray(features)[keep]
    return dataclasses.replace(
        candidates,
        item_ids=np.asarray(candidates.item_ids)[keep],
        features=features,
        sources=[s for s, k in zip(candidates.sources, keep, strict=True) if k],
    )


def explain(contributions: Sequence[tuple[str, float]], top: int) -> tuple[str, list[Contribution]]:
    """The ``top`` features that moved a score most, as text and as pairs."""
    ranked = sorted(
        ((name, float(value)) for name, value in contributions if name != "bias"),
        key=lambda pair: -abs(pair[1]),
    )[:top]
    if not ranked:
        return "", []
    text = ", ".join(f"{name} {value:+.2f}" for name, value in ranked)
    return text, [Contribution(feature=n, contribution=v) for n, v in ranked]


class RecommendationEngine:
    """Everything loaded once at start-up, and the request path over it.

    Parameters
    ----------
    config
        From :func:`bentos.config.load_serve_config`.
    recommender
        Retrievers and ranker of one model version (``models.api.load_recommender``).
    store
        The Feast store whose registry describes the ranker's feature service; used once,
        to learn the Redis layout.
    """

    def __init__(
        self,
        config: ServeConfig,
        recommender: Recommender,
        store: Any,
        *,
        index: PurchaseIndex | None = None,
        hooks: EngineHooks | None = None,
    ) -> None:
        self.config = config
        self.recommender = recommender
        self.hooks = hooks or EngineHooks()
        settings = config.settings

        # Where each feature lives in Redis, from the registry of the ranker's service.
        layouts = view_layouts(store, recommender.feature_service)
        self.user_view = next((v for v, lay in layouts.items() if lay.join_key == S.USER_ID), None)
        self.item_view = next((v for v, lay in layouts.items() if lay.join_key == S.ITEM_ID), None)
        if self.item_view is None:
            raise ConfigError(
                f"feature service {recommender.feature_service!r} reads no view keyed by "
                f"{S.ITEM_ID!r}; the ranker needs item features."
            )
        self.layouts = {v: lay for v, lay in layouts.items() if lay.join_key != S.SESSION_ID}
        self.reader = FeastRedisReader(
            make_client(settings.redis_url, budget_ms=config.redis_budget_ms),
            project=store.project,
            layouts=self.layouts,
            item_view=self.item_view,
            item_cache_s=config.item_cache_s,
        )

        # Catalogue facts: titles, prices for guest baskets, title embeddings for MMR.
        self.titles: Mapping[str, str] = recommender.item_titles()
        self.prices = self._load_prices(settings.paths.items)
        ids, matrix = recommender.item_embeddings()
        matrix = np.asarray(matrix, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.embeddings = matrix / np.where(norms > 0, norms, 1.0)
        self.embedding_row = {str(i): n for n, i in enumerate(ids)}

        # The ranker's booster, read directly (scores for all, explanations for the shown).
        try:
            self.scorer: FastScorer | None = FastScorer(recommender)
        except AttributeError as exc:
            logger.warning("no direct access to the ranker (%s): using Recommender.rank", exc)
            self.scorer = None

        # Purchases by user and item, for the time-aware business rules.
        self.index = index if index is not None else PurchaseIndex.from_events(settings.paths)

        self.audit = AuditLog(
            config.audit_log, salt=load_salt(settings.paths.data_dir, config.audit_salt)
        )
        self.opt_outs = OptOutStore(config.opt_out_file)

        # After a Redis failure, skip it until this monotonic time, then try again.
        self._redis_down_until = 0.0
        self._redis_reason = Fallback.REDIS_UNAVAILABLE
        self._redis_lock = threading.Lock()
        self.redis_up = self.reader.ping()
        if self.redis_up:
            started = time.perf_counter()
            try:
                n = self.reader.warm_items(self.titles.keys())
                logger.info(
                    "item feature cache warmed: %d items in %.2f s",
                    n,
                    time.perf_counter() - started,
                )
            except OnlineStoreError as exc:
                logger.warning("item feature cache not warmed: %s", exc)
        else:
            logger.warning(
                "Redis at %s does not answer: answers fall back to popularity until it does",
                settings.redis_url,
            )

    @property
    def model_version(self) -> str:
        return self.recommender.model_version

    # -- clock --------------------------------------------------------------------------

    def now(self) -> datetime:
        """The service's current time (see ``SHELFWISE_SERVE_NOW``)."""
        setting = self.config.now
        if setting == "wall":
            return datetime.now(UTC)
        if setting == "data_end":
            if self.index.data_end is None:
                return datetime.now(UTC)
            return midnight_utc(self.index.data_end) + timedelta(days=1)
        try:
            value = datetime.fromisoformat(setting)
        except ValueError:
            raise ConfigError(
                f"SHELFWISE_SERVE_NOW={setting!r} is not 'wall', 'data_end' or an ISO time."
            ) from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _load_prices(path: Any) -> dict[str, float]:
        import polars as pl

        try:
            frame = pl.read_parquet(path, columns=[S.ITEM_ID, S.PRICE_MEDIAN])
        except (OSError, pl.exceptions.PolarsError) as exc:
            logger.warning("no item prices (%s): guest baskets are valued at 0", exc)
            return {}
        return dict(zip(frame[S.ITEM_ID].cast(pl.String), frame[S.PRICE_MEDIAN], strict=True))

    def _redis_skipped(self) -> Fallback | None:
        with self._redis_lock:
            if time.monotonic() < self._redis_down_until:
                return self._redis_reason
        return None

    def _redis_failed(self, exc: OnlineStoreError) -> Fallback:
        reason = Fallback.REDIS_TIMEOUT if exc.reason == "timeout" else Fallback.REDIS_UNAVAILABLE
        with self._redis_lock:
            self._redis_down_until = time.monotonic() + self.config.redis_retry_s
            self._redis_reason = reason
            was_up = self.redis_up
            self.redis_up = False
        if was_up:
            logger.warning("Redis failed (%s): serving popularity fallbacks", exc)
        self.hooks.on_redis(False)
        return reason

    def _redis_ok(self) -> None:
        if not self.redis_up:
            logger.warning("Redis answers again: personalised answers resume")
            self.redis_up = True
            self.hooks.on_redis(True)

    def session_features(
        self, items: Sequence[str], *, country: str | None, when: datetime
    ) -> dict[str, Any]:
        """A guest basket's features, computed by the offline pipeline's own function."""
        import polars as pl

        from feature_repo.features import SESSION_EVENT_SCHEMA, session_features

        frame = pl.DataFrame(
            {
                S.SESSION_ID: ["request"] * len(items),
                S.ITEM_ID: list(items),
                S.EVENT_TYPE: [S.PURCHASE] * len(items),
                S.QUANTITY: [1] * len(items),
                S.PRICE: [float(self.prices.get(i) or 0.0) for i in items],
                S.COUNTRY: [country] * len(items),
                S.EVENT_TIMESTAMP: [when] * len(items),
            },
            schema=SESSION_EVENT_SCHEMA,
        )
        row = session_features(frame).row(0, named=True)
        return {name: row[name] for name in S.SESSION_FEATURES}

    # -- the non-personalised answer -------------------------------------------------------

    def popular_items(
        self,
        k: int,
        *,
        country: str | None,
        exclude: Sequence[str],
        as_of: datetime,
    ) -> list[RecommendedItem]:
        """Recent popularity, through the same catalogue rules (no user data is used)."""
        popular_ids, scores = self.recommender.popular(max(3 * k, k + 50), country=country)
        ids = [str(i) for i in popular_ids]
        outcome = apply_rules(
            ids,
            index=self.index,
            user_id=None,
            as_of=as_of,
            recent_days=self.config.recent_days,
            unsold_days=self.config.unsold_days,
            exclude=exclude,
        )
        chosen = np.flatnonzero(outcome.keep)[:k]
        return [
            RecommendedItem(
                item_id=ids[j],
                title=self.titles.get(ids[j]),
                score=float(scores[j]),
                rank=rank,
                sources=[POPULAR_SOURCE],
                explanation="popular with buyers recently",
            )
            for rank, j in enumerate(chosen, start=1)
        ]

    # -- endpoints ----------------------------------------------------------------------

    def recommend(self, request: RecommendRequest) -> tuple[RecommendResponse, dict[str, float]]:
        """Answer one ``/recommend`` request (never raises on a backing-store failure).

        Returns the response and the seconds spent in each stage.
        """
        started = time.perf_counter()
        timer = StageTimer()
        request_id = uuid.uuid4().hex
        as_of = request.as_of or self.now()
        user_id = request.user_id
        basket = list(dict.fromkeys(request.session_items))
        exclude = [*request.exclude_items, *basket]

        fallback: Fallback | None = None
        known: bool | None = None
        items: list[RecommendedItem] = []
        try:
            with timer.stage("opt_out"):
                opted_out = self.opt_outs.is_opted_out(user_id)
            if opted_out:
                fallback = Fallback.OPTED_OUT
            else:
                known = self.recommender.known_user(user_id) if user_id is not None else None
                if user_id is not None and not known and not basket:
                    fallback = Fallback.UNKNOWN_USER
                else:
                    fallback = self._redis_skipped()
            if fallback is None:
                items, fallback = self._personalised(
                    request,
                    user_id=user_id if known else None,
                    basket=basket,
                    exclude=exclude,
                    as_of=as_of,
                    timer=timer,
                )
        except Exception:
            # A bug must not cost the customer an answer: log it loudly and fall back.
            logger.exception("personalised path failed for request %s", request_id)
            fallback = Fallback.INTERNAL_ERROR
            items = []

        if fallback is not None:
            with timer.stage("fallback"):
                items = self.popular_items(
                    request.k, country=request.country, exclude=exclude, as_of=as_of
                )
            self.hooks.on_fallback(fallback.value)
            if fallback not in (Fallback.UNKNOWN_USER, Fallback.OPTED_OUT):
                logger.warning("request %s answered by fallback: %s", request_id, fallback.value)

        response = RecommendResponse(
            request_id=request_id,
            model_version=self.model_version,
            items=items,
            fallback=fallback,
            is_guest=user_id is None,
            known_user=known,
        )
        with timer.stage("audit"):
            self.audit.record(
                request_id=request_id,
                when=as_of,
                endpoint="recommend",
                user_id=user_id,
                model_version=self.model_version,
                k=request.k,
                items=[i.item_id for i in items],
                scores=[i.score for i in items],
                sources=[i.sources for i in items],
                fallback=fallback.value if fallback else None,
                latency_ms=(time.perf_counter() - started) * 1000.0,
            )
        timer.seconds["total"] = time.perf_counter() - started
        self.hooks.on_stages("recommend", timer.seconds)
        return response, timer.seconds

    def _personalised(
        self,
        request: RecommendRequest,
        *,
        user_id: str | None,
        basket: list[str],
        exclude: list[str],
        as_of: datetime,
        timer: StageTimer,
    ) -> tuple[list[RecommendedItem], Fallback | None]:
        cfg = self.config

        # Candidates from every retriever that applies (user history, basket, popularity).
        with timer.stage("candidates"):
            candidates = self.recommender.candidates(
                user_id=user_id,
                session_items=tuple(basket),
                country=request.country,
                n_candidates=cfg.n_candidates,
                exclude=tuple(exclude),
            )

        # Business rules before ranking, so no feature is read for an item never shown.
        with timer.stage("rules"):
            ids = [str(i) for i in candidates.item_ids]
            outcome = apply_rules(
                ids,
                index=self.index,
                user_id=user_id,
                as_of=as_of,
                recent_days=cfg.recent_days,
                unsold_days=cfg.unsold_days,
                exclude=exclude,
            )
            if not outcome.keep.all():
                candidates = _subset_candidates(candidates, outcome.keep)
                ids = [str(i) for i in candidates.item_ids]
        if not ids:
            return [], Fallback.NO_CANDIDATES
        if getattr(candidates, "policy", None) == "popularity":
            # Neither a known customer nor a known basket item: nothing to personalise on.
            return [], Fallback.UNKNOWN_ITEMS

        # Online features: the user's and every candidate's, one Redis round trip.
        with timer.stage("features"):
            entities: dict[str, list[str]] = {self.item_view: ids}  # type: ignore[dict-item]
            if user_id is not None and self.user_view is not None:
                entities[self.user_view] = [user_id]
            try:
                columns = self.reader.read(entities)
            except OnlineStoreError as exc:
                return [], self._redis_failed(exc)
            self._redis_ok()
            item_features = as_arrays(columns[self.item_view])  # type: ignore[index]
            if user_id is not None and self.user_view is not None:
                user_features: dict[str, Any] = {
                    name: values[0] for name, values in columns[self.user_view].items()
                }
            else:
                user_features = {}
        if basket:
            # The basket's session features, by the offline pipeline's own code. The
            # ranker reads the features its feature service lists and ignores the rest.
            with timer.stage("session_features"):
                user_features.update(
                    self.session_features(basket, country=request.country, when=as_of)
                )

        # XGBoost scores of every candidate, best first.
        contributions: list[list[tuple[str, float]]] | None = None
        with timer.stage("rank"):
            if self.scorer is not None:
                matrix = self.scorer.matrix(
                    candidates.features, user_features=user_features, item_features=item_features
                )
                raw = self.scorer.scores(matrix)
                order = rank_order(ids, raw)
                ranked_ids = [ids[j] for j in order]
                scores = raw[order]
                matrix = matrix[order]
            else:
                ranked, raw_scores, contributions = self.recommender.rank(
                    candidates,
                    user_id=user_id,
                    user_features=user_features,
                    item_features=item_features,
                )
                ranked_ids = [str(i) for i in ranked]
                scores = np.asarray(raw_scores, dtype=np.float64)

        # Diversity: MMR over title embeddings among the best-scored candidates.
        with timer.stage("diversity"):
            pool = min(len(ranked_ids), max(4 * request.k, 50))
            rows = [self.embedding_row.get(i) for i in ranked_ids[:pool]]
            if cfg.mmr_lambda < 1.0 and all(r is not None for r in rows):
                emb = self.embeddings[np.asarray(rows, dtype=np.int64)]
            else:
                emb = None
            chosen = mmr(scores[:pool], emb, request.k, weight=cfg.mmr_lambda)

        # Explanations: each shown item's largest feature contributions (XGBoost pred_contribs).
        with timer.stage("explain"):
            if contributions is None and self.scorer is not None:
                shown = self.scorer.contributions(matrix[chosen], top=cfg.explain_top)
            else:
                shown = [(contributions or [])[j] for j in chosen]
            source_of = {
                str(i): s for i, s in zip(candidates.item_ids, candidates.sources, strict=True)
            }
            items = []
            for rank, (j, contribution) in enumerate(zip(chosen, shown, strict=True), start=1):
                text, pairs = explain(contribution, cfg.explain_top)
                items.append(
                    RecommendedItem(
                        item_id=ranked_ids[j],
                        title=self.titles.get(ranked_ids[j]),
                        score=float(scores[j]),
                        rank=rank,
                        sources=list(source_of.get(ranked_ids[j], [])),
                        explanation=text,
                        contributions=pairs,
                    )
                )
        return items, None

    def similar_items(self, request: SimilarItemsRequest) -> SimilarItemsResponse:
        """Co-occurrence and content neighbours of one item."""
        started = time.perf_counter()
        timer = StageTimer()
        request_id = uuid.uuid4().hex
        item_id = request.item_id
        if item_id not in self.titles or is_non_product(item_id):
            error = NotFoundError(
                f"item_id={item_id!r} is not in the catalogue of model {self.model_version}."
            )
            error.field = "item_id"  # type: ignore[attr-defined]
            raise error
        with timer.stage("candidates"):
            similar_ids, scores, sources = self.recommender.similar_items(item_id, request.k + 20)
        ids = [str(i) for i in similar_ids]
        keep = [j for j, i in enumerate(ids) if i != item_id and not is_non_product(i)][: request.k]
        items = [
            SimilarItem(
                item_id=ids[j],
                title=self.titles.get(ids[j]),
                score=float(scores[j]),
                rank=rank,
                sources=list(sources[j]),
            )
            for rank, j in enumerate(keep, start=1)
        ]
        with timer.stage("audit"):
            self.audit.record(
                request_id=request_id,
                when=self.now(),
                endpoint="similar_items",
                user_id=None,
                model_version=self.model_version,
                k=request.k,
                items=[i.item_id for i in items],
                scores=[i.score for i in items],
                sources=[i.sources for i in items],
                fallback=None,
                latency_ms=(time.perf_counter() - started) * 1000.0,
            )
        timer.seconds["total"] = time.perf_counter() - started
        self.hooks.on_stages("similar_items", timer.seconds)
        return SimilarItemsResponse(
            request_id=request_id, model_version=self.model_version, item_id=item_id, items=items
        )

    def set_opt_out(self, user_id: str, *, opted_out: bool) -> OptOutResponse:
        self.opt_outs.set(user_id, opted_out=opted_out)
        return OptOutResponse(user_id=user_id, opted_out=opted_out)
