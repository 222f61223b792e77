"""Quarantine rates by reason, current window against reference."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from feature_repo import schema as S
from feature_repo.config import Settings
from feature_repo.errors import ConfigError
from monitoring.config import MonitoringConfig
from monitoring.quality import quarantine_rates
from monitoring.windows import Window, default_windows, parse_window
from tests.monitoring_fixtures import write_ingested

REFERENCE = Window(datetime(2011, 3, 1, tzinfo=UTC), datetime(2011, 3, 8, tzinfo=UTC))
CURRENT = Window(datetime(2011, 3, 8, tzinfo=UTC), datetime(2011, 3, 15, tzinfo=UTC))


def test_a_reason_whose_rate_jumps_raises_an_alert(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    write_ingested(
        settings,
        date(2011, 3, 1),
        14,
        rows_per_day=200,
        quarantine_rates={S.REASON_DUPLICATE: 0.01, S.REASON_ZERO_PRICE: 0.02},
        change_after=date(2011, 3, 8),
        changed_rates={S.REASON_DUPLICATE: 0.05, S.REASON_ZERO_PRICE: 0.02},
    )
    result = quarantine_rates(settings.paths, REFERENCE, CURRENT, MonitoringConfig())
    rates = {r.reason: r for r in result.reasons}
    assert result.rows_reference == 7 * (200 + 2 + 4)
    assert rates[S.REASON_DUPLICATE].count_current == 70
    assert rates[S.REASON_DUPLICATE].alert
    assert not rates[S.REASON_ZERO_PRICE].alert
    assert [r.reason for r in result.alerts] == [S.REASON_DUPLICATE]
    assert result.to_json()["alerts"] == [S.REASON_DUPLICATE]


def test_no_ingested_data_is_reported_not_raised(tmp_path: Path) -> None:
    result = quarantine_rates(
        Settings(data_dir=tmp_path).paths, REFERENCE, CURRENT, MonitoringConfig()
    )
    assert not result.assessed
    assert result.note is not None


def test_default_windows_follow_the_time_split_of_the_events(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    write_ingested(settings, date(2011, 1, 1), 120, rows_per_day=5)
    reference, current = default_windows(settings.paths, window_days=28)
    # Log [2011-01-01, 2011-05-01): test window the last 28 days, validation the 28 before.
    assert current == parse_window("2011-04-03", "2011-05-01")
    assert reference == parse_window("2011-02-06", "2011-03-06")


def test_windows_reject_reversed_days_and_bad_dates() -> None:
    with pytest.raises(ConfigError, match="is not before its end"):
        parse_window("2011-03-08", "2011-03-01")
    with pytest.raises(ConfigError, match="is not a date"):
        parse_window("March", "2011-03-01")


def test_drift_without_windows_writes_only_the_examples_the_log_covers(tmp_path: Path) -> None:
    from monitoring.__main__ import _examples_in_log, build_parser

    settings = Settings(data_dir=tmp_path)
    write_ingested(settings, date(2011, 3, 1), 61, rows_per_day=5)
    args = build_parser().parse_args(["drift", "--data-dir", str(tmp_path)])
    found = _examples_in_log(args)
    # [2011-03-01, 2011-05-01) holds the April weeks but not the Christmas season.
    assert [name for name, _, _ in found] == ["spring-weeks"]
    assert found[0][1] == parse_window("2011-04-04", "2011-04-11")
