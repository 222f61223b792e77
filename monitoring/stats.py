"""Column statistics computed with polars alone.

They serve the report's own tables (null shares, means, category shares) and repeat the
drift scores Evidently computes by default on large samples, normed Wasserstein distance
for numbers and Jensen-Shannon distance for categories, so the two can be checked
against each other and timed against each other.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

logger = logging.getLogger(__name__)

# Evidently treats a numeric column with at most this many distinct values (both windows
# together) as categorical when it picks a drift method.
FEW_DISTINCT_VALUES = 5
# Evidently's floor on the reference standard deviation used to norm the distance.
MIN_NORM = 0.001


@dataclass(frozen=True)
class ColumnStats:
    """Summary of one column in the reference and the current window."""

    column: str
    kind: str  # "numerical" or "categorical"
    n_reference: int
    n_current: int
    null_share_reference: float
    null_share_current: float
    mean_reference: float | None
    mean_current: float | None
    n_unique_reference: int
    n_unique_current: int
    top_reference: str | None
    top_current: str | None

    def to_json(self) -> dict[str, object]:
        return {k: _clean(v) for k, v in self.__dict__.items()}


def _clean(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def column_stats(
    reference: pl.DataFrame, current: pl.DataFrame, column: str, *, kind: str
) -> ColumnStats:
    """Null shares, means (numbers), distinct counts and most frequent values of ``column``."""

    def one(frame: pl.DataFrame) -> tuple[int, float, float | None, int, str | None]:
        if column not in frame.columns or frame.height == 0:
            return frame.height, 1.0, None, 0, None
        series = frame[column]
        non_null = series.drop_nulls()
        if series.dtype.is_float():
            non_null = non_null.filter(non_null.is_finite())
        null_share = 1.0 - non_null.len() / frame.height
        mean = None
        if kind == "numerical" and non_null.len() and series.dtype.is_numeric():
            mean = float(non_null.cast(pl.Float64).mean())  # type: ignore[arg-type]
        top = None
        if non_null.len():
            counts = non_null.value_counts(sort=True)
            top = str(counts[column][0])
        return frame.height, null_share, mean, int(non_null.n_unique()), top

    n_ref, null_ref, mean_ref, uniq_ref, top_ref = one(reference)
    n_cur, null_cur, mean_cur, uniq_cur, top_cur = one(current)
    return ColumnStats(
        column,
        kind,
        n_ref,
        n_cur,
        null_ref,
        null_cur,
        mean_ref,
        mean_cur,
        uniq_ref,
        uniq_cur,
        top_ref,
        top_cur,
    )


def _values(frame: pl.DataFrame, column: str) -> pl.Series:
    series = frame[column].drop_nulls()
    if series.dtype.is_float():
        series = series.filter(series.is_finite())
    return series


def wasserstein_normed(reference: pl.Series, current: pl.Series) -> float:
    """First Wasserstein distance of two samples over the reference's standard deviation.

    The distance is the area between the two empirical distribution functions, computed
    from the pooled values sorted once.
    """
    ref = reference.drop_nulls().cast(pl.Float64)
    cur = current.drop_nulls().cast(pl.Float64)
    if ref.len() == 0 or cur.len() == 0:
        return math.nan
    pooled = pl.concat(
        [
            pl.DataFrame({"x": ref, "w": pl.repeat(1.0 / ref.len(), ref.len(), eager=True)}),
            pl.DataFrame({"x": cur, "w": pl.repeat(-1.0 / cur.len(), cur.len(), eager=True)}),
        ]
    )
    area = (
        pooled.group_by("x")
        .agg(pl.col("w").sum())
        .sort("x")
        .select(
            (pl.col("w").cum_sum().abs() * (pl.col("x").shift(-1) - pl.col("x")))
            .fill_null(0.0)
            .sum()
        )
        .item()
    )
    norm = max(float(ref.std(ddof=0) or 0.0), MIN_NORM)  # type: ignore[arg-type]
    return float(area) / norm


def jensen_shannon(reference: pl.Series, current: pl.Series) -> float:
    """Jensen-Shannon distance (natural log) of the value shares of two samples."""
    ref = reference.drop_nulls()
    cur = current.drop_nulls()
    if ref.len() == 0 or cur.len() == 0:
        return math.nan
    shares = (
        ref.cast(pl.String)
        .value_counts(name="n_ref")
        .rename({ref.name: "v"})
        .join(
            cur.cast(pl.String).value_counts(name="n_cur").rename({cur.name: "v"}),
            on="v",
            how="full",
            coalesce=True,
        )
        .fill_null(0)
        .select(
            (pl.col("n_ref") / ref.len()).alias("p"),
            (pl.col("n_cur") / cur.len()).alias("q"),
        )
        .with_columns(((pl.col("p") + pl.col("q")) / 2).alias("m"))
    )

    def kl(col: str) -> pl.Expr:
        p = pl.col(col)
        return pl.when(p > 0).then(p * (p / pl.col("m")).log()).otherwise(0.0).sum()

    divergence = shares.select((kl("p") + kl("q")) / 2).item()
    return math.sqrt(max(float(divergence), 0.0))


def default_drift_score(
    reference: pl.Series, current: pl.Series, *, kind: str, num_method: str | None = None
) -> tuple[str, float]:
    """``(method, score)`` as Evidently's default picks them for samples over 1000 rows,
    or with ``num_method="wasserstein"`` the Wasserstein distance for every number."""
    if kind == "numerical" and num_method == "wasserstein":
        return "wasserstein", wasserstein_normed(reference, current)
    if kind == "numerical":
        n_values = pl.concat([reference.drop_nulls(), current.drop_nulls()]).n_unique()
        if n_values > FEW_DISTINCT_VALUES:
            return "wasserstein", wasserstein_normed(reference, current)
    return "jensenshannon", jensen_shannon(reference, current)


def drift_table(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    *,
    numerical: Sequence[str],
    categorical: Sequence[str],
    num_method: str | None = None,
) -> pl.DataFrame:
    """Per column: drift method and score, null shares and means, polars only."""
    rows = []
    for kind, columns in (("numerical", numerical), ("categorical", categorical)):
        for column in columns:
            method, score = default_drift_score(
                _values(reference, column),
                _values(current, column),
                kind=kind,
                num_method=num_method,
            )
            stats = column_stats(reference, current, column, kind=kind)
            rows.append(
                {
                    "column": column,
                    "method": method,
                    "score": score,
                    "null_share_reference": stats.null_share_reference,
                    "null_share_current": stats.null_share_current,
                    "mean_reference": stats.mean_reference,
                    "mean_current": stats.mean_current,
                }
            )
    return pl.DataFrame(rows)
