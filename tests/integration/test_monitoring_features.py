"""Feature drift input read from a real Feast registry and offline store, point in time."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from feature_repo import schema as S
from feature_repo.config import Settings
from feature_repo.features import build_features
from feature_repo.ingest import ingest, scan_events
from feature_repo.store import apply, get_store
from monitoring.config import MonitoringConfig
from monitoring.drift import MonitoringError
from monitoring.features import feature_frames
from monitoring.windows import parse_window

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store_settings(real_log_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The first days of the real log, ingested, featurised and applied to a registry."""
    settings = Settings(
        raw_dir=real_log_slice,
        data_dir=tmp_path_factory.mktemp("mon_feast"),
        project="t_monitoring",
    )
    ingest(settings.raw_dir, settings.paths)
    build_features(settings.paths)
    apply(settings, store=get_store(settings, use_redis=True))
    return settings


def test_views_of_the_feature_service_are_read_point_in_time(store_settings: Settings) -> None:
    reference = parse_window("2010-12-01", "2010-12-06")
    current = parse_window("2010-12-06", "2010-12-10")
    views = feature_frames(
        store_settings, reference, current, config=MonitoringConfig(feature_sample_rows=100_000)
    )

    # The service's views and features, as the registry lists them.
    by_name = {v.view: v for v in views}
    assert set(by_name) == {S.USER_VIEW, S.ITEM_VIEW}
    assert list(by_name[S.USER_VIEW].kinds) == list(S.USER_FEATURES)
    assert by_name[S.USER_VIEW].categorical == ["user_country"]
    assert list(by_name[S.ITEM_VIEW].kinds) == list(S.ITEM_FEATURES)

    # One row per user and day active in the window, at that day's midnight.
    events = (
        scan_events(store_settings.paths)
        .filter(pl.col(S.EVENT_TYPE) == S.PURCHASE, pl.col(S.USER_ID).is_not_null())
        .collect()
    )
    users = by_name[S.USER_VIEW].current
    active = (
        events.filter(pl.col(S.EVENT_TIMESTAMP) >= current.start)
        .select(S.USER_ID, pl.col(S.EVENT_TIMESTAMP).dt.truncate("1d"))
        .unique()
    )
    assert users.height == active.height
    assert (users[S.EVENT_TIMESTAMP].dt.hour() == 0).all()

    # Tenure at a day counts from the user's first event day before it: only the past.
    all_events = scan_events(store_settings.paths).filter(pl.col(S.USER_ID).is_not_null()).collect()
    first = all_events.group_by(S.USER_ID).agg(
        pl.col(S.EVENT_TIMESTAMP).min().dt.truncate("1d").alias("first")
    )
    joined = users.join(first, on=S.USER_ID).with_columns(
        ((pl.col(S.EVENT_TIMESTAMP) - pl.col("first")).dt.total_days()).alias("expected")
    )
    returning = joined.filter(pl.col("expected") > 0)
    assert returning.height > 50
    assert (returning["user_tenure_days"] == returning["expected"]).all()
    # A user's first day has no snapshot before it: no features.
    new = joined.filter(pl.col("expected") == 0)
    assert new.height > 0
    assert new["user_tenure_days"].null_count() == new.height


def test_sampling_caps_the_entity_rows(store_settings: Settings) -> None:
    window = parse_window("2010-12-01", "2010-12-10")
    views = feature_frames(
        store_settings, window, window, config=MonitoringConfig(feature_sample_rows=40)
    )
    assert all(v.reference.height == 40 for v in views)


def test_a_missing_registry_is_reported_with_the_fix(tmp_path: Path) -> None:
    window = parse_window("2010-12-01", "2010-12-10")
    with pytest.raises(MonitoringError, match="make features"):
        feature_frames(Settings(data_dir=tmp_path), window, window, config=MonitoringConfig())
