"""Per-column drift: known drift, known stability, and the columns that cannot be compared."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from monitoring.config import MonitoringConfig
from monitoring.drift import (
    FLAG_ALL_NULL_CURRENT,
    FLAG_ALL_NULL_REFERENCE,
    FLAG_CONSTANT,
    FLAG_MISSING,
    FLAG_TOO_FEW_ROWS,
    FLAG_UNSEEN,
    combine,
    run_drift,
    screen_columns,
)
from monitoring.stats import jensen_shannon, wasserstein_normed
from tests.monitoring_fixtures import CATEGORICAL, NUMERICAL, feature_windows

CONFIG = MonitoringConfig()


def kinds() -> dict[str, str]:
    return {c: "numerical" for c in NUMERICAL} | {c: "categorical" for c in CATEGORICAL}


def test_shifted_columns_drift_and_the_unchanged_one_does_not() -> None:
    """Half a standard deviation of shift is drift; an unchanged column is not."""
    reference, current = feature_windows(shift=0.5, seed=1)
    result = run_drift("t", reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
    drifted = {c.column for c in result.columns if c.drifted}
    assert drifted == {"spend", "recency", "country"}
    assert result.drift_share == pytest.approx(3 / 4)
    assert not result.flags


def test_windows_from_one_distribution_do_not_drift() -> None:
    reference, current = feature_windows(shift=0.0, seed=2)
    result = run_drift("t", reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
    assert result.n_drifted == 0
    assert result.drift_share == 0.0
    assert all(c.score < c.threshold for c in result.columns)


def test_evidently_scores_equal_the_polars_statistics() -> None:
    """The verdicts read back from Evidently's result are the statistics polars computes."""
    reference, current = feature_windows(shift=0.3, seed=3)
    result = run_drift("t", reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
    for column in ("spend", "recency", "units"):
        drift = result.column(column)
        assert drift is not None
        assert drift.method == "Wasserstein distance (normed)"
        expected = wasserstein_normed(reference[column], current[column])
        assert drift.score == pytest.approx(expected, rel=1e-9)
    country = result.column("country")
    assert country is not None
    assert country.score == pytest.approx(
        jensen_shannon(reference["country"], current["country"]), rel=1e-9
    )


def test_wasserstein_of_a_pure_shift_is_the_shift_over_the_spread() -> None:
    values = pl.Series(np.arange(1000, dtype=float))
    expected = 5.0 / float(values.std(ddof=0))  # type: ignore[arg-type]
    assert wasserstein_normed(values, values + 5.0) == pytest.approx(expected, rel=1e-9)
    assert wasserstein_normed(values, values) == 0.0


def test_a_column_null_in_one_window_is_flagged_and_left_out() -> None:
    reference, current = feature_windows(seed=4)
    reference = reference.with_columns(
        pl.lit(None, dtype=pl.Float64).alias("gone_before"), pl.col("spend").alias("gone_after")
    )
    current = current.with_columns(
        pl.col("spend").alias("gone_before"), pl.lit(None, dtype=pl.Float64).alias("gone_after")
    )
    result = run_drift(
        "t",
        reference,
        current,
        numerical=[*NUMERICAL, "gone_before", "gone_after"],
        categorical=CATEGORICAL,
    )
    reasons = {f.column: f.reason for f in result.flags}
    assert reasons == {"gone_before": FLAG_ALL_NULL_REFERENCE, "gone_after": FLAG_ALL_NULL_CURRENT}
    assert {c.column for c in result.columns} == {*NUMERICAL, *CATEGORICAL}
    summary = result.to_json()
    assert summary["flagged_columns"] == ["gone_after", "gone_before"]
    assert summary["n_assessed"] == 4


def test_a_constant_column_is_flagged_even_when_the_current_window_differs() -> None:
    """A spread of zero cannot norm a distance: the column is flagged, with how many
    current values differ from the constant."""
    reference, current = feature_windows(seed=5)
    reference = reference.with_columns(pl.lit(1.0).alias("flag"))
    current = current.with_columns(pl.Series("flag", np.r_[np.ones(2900), np.zeros(100)]))
    result = run_drift("t", reference, current, numerical=[*NUMERICAL, "flag"])
    (flag,) = result.flags
    assert flag.reason == FLAG_CONSTANT
    assert "100 of 3000" in flag.detail
    assert result.column("flag") is None


def test_unseen_categories_flag_the_column_and_name_the_categories() -> None:
    reference, current = feature_windows(seed=6)
    current = current.with_columns(
        pl.when(pl.int_range(pl.len()) < 30)
        .then(pl.lit("Iceland"))
        .otherwise(pl.col("country"))
        .alias("country")
    )
    result = run_drift("t", reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
    (flag,) = result.flags
    assert flag.reason == FLAG_UNSEEN
    assert "'Iceland'" in flag.detail
    assert "30 of 3000" in flag.detail
    assert result.column("country") is None
    assert result.drift_share is not None
    assert len(result.columns) == 3


def test_unseen_categories_below_the_configured_share_are_assessed() -> None:
    reference, current = feature_windows(seed=6)
    current = current.with_columns(
        pl.when(pl.int_range(pl.len()) < 30)
        .then(pl.lit("Iceland"))
        .otherwise(pl.col("country"))
        .alias("country")
    )
    assessable, flags = screen_columns(
        reference, current, kinds(), MonitoringConfig(max_unseen_share=0.05)
    )
    assert "country" in assessable
    assert not flags


def test_a_window_with_too_few_rows_assesses_nothing_and_says_why() -> None:
    reference, current = feature_windows(n_current=7, seed=7)
    result = run_drift("t", reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
    assert not result.assessed
    assert result.drift_share is None
    assert {f.reason for f in result.flags} == {FLAG_TOO_FEW_ROWS}
    assert result.note is not None
    assert "current has 7 row(s)" in result.note
    assert result.snapshots == {}


def test_a_column_absent_from_one_window_is_flagged() -> None:
    reference, current = feature_windows(seed=8)
    _, flags = screen_columns(reference, current.drop("units"), kinds(), CONFIG)
    assert [(f.column, f.reason) for f in flags] == [("units", FLAG_MISSING)]


def test_combined_parts_pool_their_columns_into_one_share() -> None:
    ref_a, cur_a = feature_windows(shift=0.5, seed=9)
    ref_b, cur_b = feature_windows(shift=0.0, seed=10)
    a = run_drift("a", ref_a, cur_a, numerical=["spend", "units"])
    b = run_drift("b", ref_b, cur_b, numerical=["spend", "units"])
    both = combine("features", [a, b])
    assert both.n_drifted == 1
    assert len(both.columns) == 4
    assert both.drift_share == pytest.approx(0.25)
    assert set(both.snapshots) == {"a", "b"}
    assert both.row_counts == {"a": (3000, 3000), "b": (3000, 3000)}


def test_empty_samples_give_nan_statistics() -> None:
    empty = pl.Series("x", [], dtype=pl.Float64)
    assert math.isnan(wasserstein_normed(empty, pl.Series("x", [1.0, 2.0])))
    assert math.isnan(jensen_shannon(empty, pl.Series("x", ["a"])))
