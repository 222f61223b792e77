"""Training end to end on a slice of the real log with a real Feast registry (temp folder).

The slice covers nine days, so the split uses two-day windows and one-day label windows.
Events are cut down to the best-selling items so that MiniLM encodes a few hundred titles.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from feature_repo import schema as S
from feature_repo.config import Settings
from feature_repo.timesplit import time_split
from models.api import load_recommender
from models.evaluation import METRICS
from models.training import TrainConfig, TrainResult, load_events, run_training
from tests.conftest import most_bought_slice

pytestmark = pytest.mark.integration

N_ITEMS = 250
NEW_FEATURE = "item_units_per_buyer_30d"
CONFIG = TrainConfig(
    n_candidates=30,
    n_train_cutoffs=1,
    label_days=1,
    max_users_per_cutoff=50,
    max_eval_users=50,
    progress=False,
    ranker_params={"n_estimators": 30, "early_stopping_rounds": 10},
)


def build_store(settings: Settings) -> Any:
    from feature_repo.store import apply, get_store

    store = get_store(settings, use_redis=False)
    apply(settings, store=store)
    return store


@pytest.fixture(scope="module")
def world(real_log_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from feature_repo.features import build_features
    from feature_repo.ingest import ingest

    root = tmp_path_factory.mktemp("models_it")
    settings = Settings(raw_dir=real_log_slice, data_dir=root / "data", project="t_models")
    ingest(settings.raw_dir, settings.paths)
    build_features(settings.paths)
    store = build_store(settings)
    events, items = load_events(settings)
    assert items is not None
    events, items = most_bought_slice(events, items, N_ITEMS)
    lo, hi = events[S.EVENT_TIMESTAMP].min(), events[S.EVENT_TIMESTAMP].max()
    split = time_split(lo, hi + timedelta(seconds=1), window=timedelta(days=2))
    return {
        "root": root,
        "settings": settings,
        "store": store,
        "events": events,
        "items": items,
        "split": split,
    }


def train(
    world: dict[str, Any], *, store: Any = None, settings: Settings | None = None, name: str = "run"
) -> TrainResult:
    return run_training(
        settings or world["settings"],
        config=CONFIG,
        store=store or world["store"],
        events=world["events"],
        items=world["items"],
        split=world["split"],
        bentoml_home=world["root"] / "bentoml",
        reports_dir=world["root"] / name,
    )


@pytest.fixture(scope="module")
def first(world: dict[str, Any]) -> TrainResult:
    return train(world, name="first")


def test_training_writes_reports_and_stores_lineage(
    world: dict[str, Any], first: TrainResult
) -> None:
    payload = json.loads(first.json_path.read_text())
    lists = payload["results"]["all"]["all_users"]
    assert {"popularity_baseline", "buy_again", "als", "blended", "ranked"} <= set(lists)
    assert set(METRICS) <= set(lists["ranked"])
    assert set(payload["results"]) == {"all", "new"}
    assert set(payload["results"]["new"]) == {"all_users", "unseen_users"}
    assert first.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "NDCG@10" in first.table

    loaded = load_recommender(bentoml_home=world["root"] / "bentoml")
    assert loaded.model_version == first.tag
    lineage = loaded.lineage
    for key in (
        "data_fingerprint",
        "train_cutoffs",
        "valid_cutoff",
        "test_cutoff",
        "feature_service",
        "feature_service_version",
        "ranker_params",
        "retriever_params",
        "metrics",
        "library_versions",
        "seed",
    ):
        assert key in lineage, key
    assert lineage["feature_service"] == S.RANKER_SERVICE == loaded.feature_service
    assert lineage["feature_service_version"] == "1"
    assert json.loads(lineage["metrics"])["all/ranked"]["ndcg@10"] == pytest.approx(
        payload["results"]["all"]["all_users"]["ranked"]["ndcg@10"], abs=1e-6
    )
    # The features the service needs are those the registry lists for the service.
    service = world["store"].get_feature_service(S.RANKER_SERVICE)
    listed = {f.name for p in service.feature_view_projections for f in p.features}
    assert set(loaded.user_feature_names) | set(loaded.item_feature_names) == listed


def test_training_twice_gives_the_same_metrics(world: dict[str, Any], first: TrainResult) -> None:
    second = train(world, name="second")
    assert second.tag != first.tag
    assert second.results == first.results


def test_loaded_recommender_answers_the_serving_contract(
    world: dict[str, Any], first: TrainResult
) -> None:
    rec = load_recommender(first.tag, bentoml_home=world["root"] / "bentoml")
    split = world["split"]
    before = world["events"].filter(pl.col(S.EVENT_TIMESTAMP) < split.test_start)
    user = str(before[S.USER_ID].drop_nulls().mode().sort()[0])
    assert rec.known_user(user)
    assert not rec.known_user("NEVER-SEEN")

    cands = rec.candidates(user_id=user, n_candidates=30)
    assert len(cands.item_ids) == len(cands.sources) == len(cands.features) <= 30
    n = len(cands.item_ids)
    item_features = {name: np.ones(n) for name in rec.item_feature_names}
    user_features = {name: 1.0 for name in rec.user_feature_names}
    user_features["user_country"] = "United Kingdom"
    ids, scores, why = rec.rank(
        cands, user_id=user, user_features=user_features, item_features=item_features
    )
    assert sorted(ids.tolist()) == sorted(cands.item_ids.tolist())
    assert np.all(np.diff(scores) <= 1e-9)
    assert len(why) == n
    assert all(name in rec.ranker.feature_names_ for name, _ in why[0])

    guest = rec.candidates(user_id=None, session_items=[str(ids[0]), "UNKNOWN-ID"])
    assert guest.policy == "session"
    assert guest.n_unknown_items == 1
    pop_ids, pop_scores = rec.popular(5, country="United Kingdom")
    assert len(pop_ids) == 5
    assert np.all(np.diff(pop_scores) <= 0)
    sim_ids, _, sources = rec.similar_items(str(ids[0]), 5)
    assert str(ids[0]) not in set(sim_ids.tolist())
    assert all(set(s) <= {"covisitation", "content"} for s in sources)
    emb_ids, vectors = rec.item_embeddings()
    assert vectors.shape == (len(emb_ids), 384)
    assert set(rec.item_titles()) >= set(emb_ids.tolist())


def test_a_registered_feature_flows_into_the_next_training(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """A new field on a feature view, listed in the service: training reads it, no code change."""
    from feast import FeatureService, Field
    from feast.types import Float64

    from feature_repo.definitions import build_definitions

    # A private copy of the data folder and registry, so other tests keep theirs.
    settings = Settings(
        raw_dir=world["settings"].raw_dir, data_dir=tmp_path / "data", project="t_models_reg"
    )
    shutil.copytree(
        world["settings"].data_dir, settings.data_dir, ignore=shutil.ignore_patterns("feast")
    )

    # The data scientist's change: compute the column, add the field, list it in the service.
    path = settings.paths.feature_table(S.ITEM_VIEW)
    table = pl.read_parquet(path)
    table = table.with_columns(
        (pl.col("item_units_30d") / (pl.col("item_buyers_30d") + 1))
        .cast(pl.Float64)
        .alias(NEW_FEATURE)
    )
    table.write_parquet(path)
    objects = build_definitions(settings)
    item_view = objects[S.ITEM_VIEW]
    item_view.schema.append(Field(name=NEW_FEATURE, dtype=Float64))
    item_view.features.append(Field(name=NEW_FEATURE, dtype=Float64))
    service = FeatureService(
        name=S.RANKER_SERVICE,
        features=[objects[S.USER_VIEW], item_view],
        tags={"version": "1"},
    )
    from feature_repo.store import get_store

    store = get_store(settings, use_redis=False)
    store.apply([*(o for k, o in objects.items() if k != S.RANKER_SERVICE), service])

    result = train(world, store=store, settings=settings, name="registered")
    rec = result.recommender
    assert NEW_FEATURE in rec.item_feature_names
    assert NEW_FEATURE in rec.ranker.feature_names_
    loaded = load_recommender(result.tag, bentoml_home=world["root"] / "bentoml")
    assert f"{S.ITEM_VIEW}:{NEW_FEATURE}" in loaded.lineage["feature_refs"]
