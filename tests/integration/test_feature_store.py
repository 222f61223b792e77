"""The Feast feature store on a real registry, DuckDB offline store and real Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from feast import FeatureView, Field, FileSource
from feast.types import Float64, Int64

from feature_repo import schema as S
from feature_repo.config import Settings
from feature_repo.definitions import build_definitions
from feature_repo.features import build_features
from feature_repo.ingest import ingest, scan_events
from feature_repo.store import apply, get_store, materialize
from tests.conftest import RedisServer

pytestmark = pytest.mark.integration

T0 = datetime(2011, 3, 1, tzinfo=UTC)


def hand_view(
    settings: Settings, rows: pd.DataFrame, *, ttl: timedelta, name: str = "hand"
) -> FeatureView:
    """A one-feature view over a hand-written Parquet file with the user entity."""
    path = settings.data_dir / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.from_pandas(rows).with_columns(
        pl.col(S.EVENT_TIMESTAMP, S.CREATED_TIMESTAMP).dt.cast_time_unit("us")
    ).write_parquet(path)
    user = build_definitions(settings)["user"]
    return FeatureView(
        name=name,
        entities=[user],
        ttl=ttl,
        schema=[Field(name="score", dtype=Float64), Field(name="nulls", dtype=Int64)],
        source=FileSource(
            path=str(path),
            timestamp_field=S.EVENT_TIMESTAMP,
            created_timestamp_column=S.CREATED_TIMESTAMP,
        ),
        description="hand-built history for point-in-time tests",
    )


@pytest.fixture
def hand_store(tmp_path: Path, redis_server: RedisServer):
    settings = Settings(
        data_dir=tmp_path / "data",
        redis_url=redis_server.url,
        project=f"pit_{tmp_path.name[-8:].replace('-', '_')}",
    )
    rows = pd.DataFrame(
        {
            S.USER_ID: ["u1", "u1", "u1", "u2", "u2"],
            S.EVENT_TIMESTAMP: [
                T0,
                T0 + timedelta(days=1),
                T0 + timedelta(days=1),
                T0,
                T0 - timedelta(days=30),
            ],
            # u1's day-1 row was corrected: the later created_timestamp (written first on disk)
            # must win.
            S.CREATED_TIMESTAMP: [T0, T0 + timedelta(days=3), T0 + timedelta(days=2), T0, T0],
            "score": [1.0, 20.0, 2.0, 5.0, 9.0],
            "nulls": pd.array([None] * 5, dtype="Int64"),
        }
    )
    view = hand_view(settings, rows, ttl=timedelta(days=3))
    store = get_store(settings)
    store.apply([build_definitions(settings)["user"], view])
    return settings, store


def historical(store, entity_df: pd.DataFrame) -> pd.DataFrame:
    return (
        store.get_historical_features(entity_df=entity_df, features=["hand:score", "hand:nulls"])
        .to_df()
        .sort_values([S.USER_ID, "label"])
        .reset_index(drop=True)
    )


def test_point_in_time_join_semantics(hand_store) -> None:
    _, store = hand_store
    at = T0 + timedelta(days=1, hours=12)
    entity_df = pd.DataFrame(
        {
            S.USER_ID: ["u1", "u1", "u1", "u2", "u2"],
            S.EVENT_TIMESTAMP: [at, at, T0 + timedelta(hours=1), at, T0 - timedelta(days=20)],
            "label": [1, 2, 3, 4, 5],
        }
    )
    out = historical(store, entity_df)
    # Entity rows sharing a key and timestamp all come back, with their extra columns.
    u1 = out[out[S.USER_ID] == "u1"]
    assert u1["label"].tolist() == [1, 2, 3]
    # Among corrected rows the newest created_timestamp wins, whatever the order on disk.
    assert u1["score"].tolist() == [20.0, 20.0, 1.0]
    u2 = out[out[S.USER_ID] == "u2"].set_index("label")
    assert u2.loc[4, "score"] == 5.0
    # A value older than the view's ttl (3 days) comes back null.
    assert pd.isna(u2.loc[5, "score"])


def test_naive_entity_timestamps_are_utc(hand_store) -> None:
    _, store = hand_store
    zoned = pd.DataFrame(
        {
            S.USER_ID: ["u1", "u2"],
            S.EVENT_TIMESTAMP: [T0 + timedelta(hours=23)] * 2,
            "label": [1, 2],
        }
    )
    naive = zoned.assign(**{S.EVENT_TIMESTAMP: zoned[S.EVENT_TIMESTAMP].dt.tz_localize(None)})
    a = historical(store, zoned)
    b = historical(store, naive)
    assert a["score"].tolist() == b["score"].tolist() == [1.0, 5.0]


def test_all_null_feature_materializes_and_unknown_ids_give_nulls(hand_store) -> None:
    _, store = hand_store
    store.materialize(
        start_date=T0 - timedelta(days=1), end_date=T0 + timedelta(days=2), feature_views=["hand"]
    )
    online = store.get_online_features(
        features=["hand:score", "hand:nulls"],
        entity_rows=[{S.USER_ID: "u1"}, {S.USER_ID: "never-seen"}],
    ).to_dict()
    assert online["score"] == [20.0, None]
    assert online["nulls"] == [None, None]


@pytest.fixture(scope="module")
def real_store(real_log_slice: Path, redis_server: RedisServer, tmp_path_factory):
    """The real definitions, applied and materialized on a week of the real log."""
    data = tmp_path_factory.mktemp("real_store")
    settings = Settings(
        raw_dir=real_log_slice, data_dir=data, redis_url=redis_server.url, project="real_slice"
    )
    ingest(real_log_slice, settings.paths)
    build_features(settings.paths)
    store = apply(settings)
    materialize(settings, store=store)
    return settings, store


def test_online_equals_historical_at_materialization_time(real_store) -> None:
    settings, store = real_store
    user_table = pl.read_parquet(settings.paths.feature_table(S.USER_VIEW))
    item_table = pl.read_parquet(settings.paths.feature_table(S.ITEM_VIEW))
    end = user_table[S.EVENT_TIMESTAMP].max()
    # A real customer and a real item present in the last snapshot.
    user_id = user_table.filter(pl.col(S.EVENT_TIMESTAMP) == end).sort(
        "user_frequency", descending=True
    )[S.USER_ID][0]
    item_id = item_table.filter(pl.col(S.EVENT_TIMESTAMP) == end).sort(
        "item_units_7d", descending=True
    )[S.ITEM_ID][0]
    service = store.get_feature_service(S.RANKER_SERVICE)
    online = store.get_online_features(
        features=service, entity_rows=[{S.USER_ID: user_id, S.ITEM_ID: item_id}]
    ).to_dict()
    offline = store.get_historical_features(
        entity_df=pd.DataFrame(
            {S.USER_ID: [user_id], S.ITEM_ID: [item_id], S.EVENT_TIMESTAMP: [end]}
        ),
        features=service,
    ).to_df()
    for name in (*S.USER_FEATURES, *S.ITEM_FEATURES):
        got, want = online[name][0], offline[name].iloc[0]
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-9), name
        else:
            assert got == want, name
    assert online["user_frequency"][0] >= 1


def test_real_slice_unknown_user_returns_nulls(real_store) -> None:
    _, store = real_store
    online = store.get_online_features(
        features=store.get_feature_service(S.RANKER_SERVICE),
        entity_rows=[{S.USER_ID: "no-such-user", S.ITEM_ID: "NO-SUCH-ITEM"}],
    ).to_dict()
    assert all(online[name] == [None] for name in (*S.USER_FEATURES, *S.ITEM_FEATURES))


def test_training_rows_never_see_the_future(real_store) -> None:
    """Features joined for a user at a time before their first purchase are null."""
    settings, store = real_store
    events = scan_events(settings.paths).filter(pl.col(S.USER_ID).is_not_null()).collect()
    first = events.group_by(S.USER_ID).agg(pl.col(S.EVENT_TIMESTAMP).min()).head(20)
    entity_df = first.with_columns(pl.col(S.EVENT_TIMESTAMP) - pl.duration(minutes=1)).to_pandas()
    out = store.get_historical_features(
        entity_df=entity_df, features=["user_features:user_frequency"]
    ).to_df()
    assert out["user_frequency"].isna().all()


def test_no_redis_falls_back_to_sqlite_online_store(tmp_path: Path) -> None:
    """With nothing listening at the Redis URL the store uses Feast's SQLite online store,
    and materialized values still come back online."""
    from tests.conftest import free_port

    settings = Settings(
        data_dir=tmp_path / "data",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        project="no_redis",
    )
    rows = pd.DataFrame(
        {
            S.USER_ID: ["u1"],
            S.EVENT_TIMESTAMP: [T0],
            S.CREATED_TIMESTAMP: [T0],
            "score": [3.5],
            "nulls": pd.array([None], dtype="Int64"),
        }
    )
    view = hand_view(settings, rows, ttl=timedelta(days=3))
    store = get_store(settings)
    assert store.config.online_store.type == "sqlite"
    store.apply([build_definitions(settings)["user"], view])
    store.materialize(start_date=T0 - timedelta(days=1), end_date=T0 + timedelta(days=1))
    online = store.get_online_features(
        features=["hand:score"], entity_rows=[{S.USER_ID: "u1"}]
    ).to_dict()
    assert online["score"] == [3.5]
    assert settings.paths.sqlite_online.exists()


def test_fast_materialize_gives_the_same_online_values_as_feast(real_store, redis_server) -> None:
    """The project's Redis writer and Feast's stock materialize leave identical values for
    every entity, nulls included."""
    settings, _ = real_store
    rows = {}
    for stock in (True, False):
        other = Settings(
            raw_dir=settings.raw_dir,
            data_dir=settings.data_dir,
            redis_url=redis_server.url,
            project=f"same_{int(stock)}",
        )
        store = apply(other)
        materialize(other, store=store, stock=stock, views=[S.USER_VIEW, S.ITEM_VIEW])
        users = pl.read_parquet(settings.paths.feature_table(S.USER_VIEW))[S.USER_ID].unique()
        items = pl.read_parquet(settings.paths.feature_table(S.ITEM_VIEW))[S.ITEM_ID].unique()
        entity_rows = [
            {S.USER_ID: u, S.ITEM_ID: i}
            for u, i in zip(users.sort().to_list(), items.sort().to_list(), strict=False)
        ]
        rows[stock] = store.get_online_features(
            features=store.get_feature_service(S.RANKER_SERVICE), entity_rows=entity_rows
        ).to_dict()
    assert rows[True].keys() == rows[False].keys()
    for name in rows[True]:
        assert rows[True][name] == rows[False][name], name
    assert any(v is not None for v in rows[False]["user_frequency"])
