"""The service's direct reader of Feast's Redis layout returns what Feast returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from bentos.online import FeastRedisReader, OnlineStoreError, make_client, view_layouts

pytestmark = pytest.mark.integration

N_ITEMS = 40


def _tiny_store(tmp_path: Path, redis_url: str):  # type: ignore[no-untyped-def]
    """A throw-away Feast project with a user view and an item view, materialised to Redis."""
    from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource
    from feast.repo_config import RegistryConfig, RepoConfig
    from feast.types import Float32, Float64, Int64, String
    from feast.value_type import ValueType

    now = datetime(2011, 12, 1, tzinfo=UTC)
    users = pd.DataFrame(
        {
            "user_id": ["12347", "12348", "99999"],
            "user_orders_30d": [3, 0, 7],
            "user_monetary": [120.5, None, 3.25],
            "user_country": ["United Kingdom", "France", None],
            "event_timestamp": [now - timedelta(hours=2)] * 3,
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [f"2{i:04d}" for i in range(N_ITEMS)],
            "item_units_7d": list(range(N_ITEMS)),
            "item_price_mean": [0.5 + i / 7 for i in range(N_ITEMS)],
            "event_timestamp": [now - timedelta(hours=1)] * N_ITEMS,
        }
    )
    users.to_parquet(tmp_path / "users.parquet")
    items.to_parquet(tmp_path / "items.parquet")
    host, port_db = redis_url.removeprefix("redis://").split(":")
    port = port_db.split("/")[0]
    config = RepoConfig(
        project="t_online",
        provider="local",
        registry=RegistryConfig(path=str(tmp_path / "registry.db"), cache_ttl_seconds=0),
        online_store={"type": "redis", "connection_string": f"{host}:{port},db=0"},
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=str(tmp_path),
    )
    store = FeatureStore(config=config)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
    user_view = FeatureView(
        name="user_features",
        entities=[user],
        ttl=timedelta(days=2),
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="user_orders_30d", dtype=Int64),
            Field(name="user_monetary", dtype=Float64),
            Field(name="user_country", dtype=String),
        ],
        source=FileSource(path=str(tmp_path / "users.parquet"), timestamp_field="event_timestamp"),
    )
    item_view = FeatureView(
        name="item_features",
        entities=[item],
        ttl=timedelta(days=2),
        schema=[
            Field(name="item_id", dtype=String),
            Field(name="item_units_7d", dtype=Int64),
            Field(name="item_price_mean", dtype=Float32),
        ],
        source=FileSource(path=str(tmp_path / "items.parquet"), timestamp_field="event_timestamp"),
    )
    service = FeatureService(name="ranker_test", features=[user_view, item_view])
    store.apply([user, item, user_view, item_view, service])
    store.materialize(now - timedelta(days=1), now)
    return store


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, redis_server):  # type: ignore[no-untyped-def]
    return _tiny_store(tmp_path_factory.mktemp("feast_online"), redis_server.url)


def _feast_columns(store, view: str, key: str, ids: list[str]) -> dict[str, list]:  # type: ignore[no-untyped-def]
    names = [f.name for f in store.get_feature_view(view).features]
    result = store.get_online_features(
        features=[f"{view}:{n}" for n in names], entity_rows=[{key: i} for i in ids]
    ).to_dict()
    return {n: result[n] for n in names}


def test_fast_reader_equals_get_online_features(tiny_store, redis_server) -> None:  # type: ignore[no-untyped-def]
    """Every value of one user and all items, plus unknown ids, equals Feast's answer."""
    layouts = view_layouts(tiny_store, "ranker_test")
    reader = FeastRedisReader(
        make_client(redis_server.url, budget_ms=1000),
        project="t_online",
        layouts=layouts,
        item_view="item_features",
        item_cache_s=300,
    )
    users = ["12347", "12348", "99999", "no-such-user"]
    items = [f"2{i:04d}" for i in range(N_ITEMS)] + ["no-such-item"]
    for use_cache in (False, True, True):  # cold, filling the cache, served from it
        got = reader.read({"user_features": users, "item_features": items}, use_cache=use_cache)
        assert got["user_features"] == _feast_columns(tiny_store, "user_features", "user_id", users)
        assert got["item_features"] == _feast_columns(tiny_store, "item_features", "item_id", items)
    assert got["user_features"]["user_monetary"][1] is None
    assert got["item_features"]["item_units_7d"][3] == 3
    assert got["item_features"]["item_units_7d"][-1] is None


def test_fast_reader_reports_a_closed_port_as_unavailable(tiny_store) -> None:  # type: ignore[no-untyped-def]
    """A Redis that is not there raises OnlineStoreError('unavailable'), not a socket error."""
    from tests.conftest import free_port

    reader = FeastRedisReader(
        make_client(f"redis://127.0.0.1:{free_port()}/0", budget_ms=200),
        project="t_online",
        layouts=view_layouts(tiny_store, "ranker_test"),
    )
    with pytest.raises(OnlineStoreError, match="unavailable") as info:
        reader.read({"user_features": ["12347"]})
    assert info.value.reason == "unavailable"
    assert not reader.ping()
