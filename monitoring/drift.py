"""Per-column drift of one dataset between a reference and a current window.

Columns that cannot be compared fairly are screened out first and flagged, and left out of
the drift share: a column entirely null in either window, a column constant in the
reference (a distance normed by a zero spread is meaningless), a categorical column with
categories the reference never saw, and every column when a window has too few rows.
The remaining columns go to Evidently (``DataDriftPreset``), whose per-column drift
scores and verdicts make the result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from feature_repo.errors import ShelfwiseError
from monitoring.config import MonitoringConfig
from monitoring.stats import ColumnStats, column_stats

logger = logging.getLogger(__name__)

# Reasons a column is left out of the drift share.
FLAG_MISSING = "missing_column"
FLAG_TOO_FEW_ROWS = "too_few_rows"
FLAG_ALL_NULL_REFERENCE = "all_null_in_reference"
FLAG_ALL_NULL_CURRENT = "all_null_in_current"
FLAG_TOO_FEW_VALUES = "too_few_values"
FLAG_CONSTANT = "constant_in_reference"
FLAG_UNSEEN = "unseen_categories"

NUMERICAL = "numerical"
CATEGORICAL = "categorical"


class MonitoringError(ShelfwiseError):
    """A drift report cannot be computed; the message names the input and the fix."""


@dataclass(frozen=True)
class ColumnFlag:
    """Why a column was left out of the drift share."""

    column: str
    reason: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"column": self.column, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's drift verdict for one column."""

    column: str
    kind: str
    method: str
    threshold: float
    score: float
    drifted: bool

    def to_json(self) -> dict[str, object]:
        return {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "threshold": self.threshold,
            "score": self.score if math.isfinite(self.score) else None,
            "drifted": self.drifted,
        }


@dataclass
class DriftResult:
    """Drift of one dataset: assessed columns, flagged columns, and Evidently's snapshot."""

    name: str
    n_reference: int
    n_current: int
    columns: list[ColumnDrift] = field(default_factory=list)
    flags: list[ColumnFlag] = field(default_factory=list)
    stats: list[ColumnStats] = field(default_factory=list)
    note: str | None = None
    # Evidently snapshots by part (one per feature view, say), kept for the HTML.
    snapshots: dict[str, Any] = field(default_factory=dict)
    row_counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def assessed(self) -> bool:
        return bool(self.columns)

    @property
    def n_drifted(self) -> int:
        return sum(c.drifted for c in self.columns)

    @property
    def drift_share(self) -> float | None:
        """Drifted share of the assessed columns; ``None`` when none was assessed."""
        return self.n_drifted / len(self.columns) if self.columns else None

    def column(self, name: str) -> ColumnDrift | None:
        return next((c for c in self.columns if c.column == name), None)

    def flagged_columns(self) -> list[str]:
        return sorted({f.column for f in self.flags})

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "row_counts": {k: list(v) for k, v in self.row_counts.items()},
            "assessed": self.assessed,
            "n_assessed": len(self.columns),
            "n_drifted": self.n_drifted,
            "drift_share": self.drift_share,
            "drifted_columns": [c.column for c in self.columns if c.drifted],
            "flagged_columns": self.flagged_columns(),
            "columns": [c.to_json() for c in self.columns],
            "flags": [f.to_json() for f in self.flags],
            "stats": [s.to_json() for s in self.stats],
            "note": self.note,
        }


def _finite(frame: pl.DataFrame, column: str) -> pl.Series:
    series = frame[column].drop_nulls()
    if series.dtype.is_float():
        series = series.filter(series.is_finite())
    return series


def screen_columns(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    columns: dict[str, str],
    config: MonitoringConfig,
) -> tuple[list[str], list[ColumnFlag]]:
    """Split ``columns`` (name to kind) into the assessable ones and flags for the rest."""
    flags: list[ColumnFlag] = []
    # A window with too few rows makes every column's verdict noise.
    small = [
        f"{label} has {frame.height} row(s)"
        for label, frame in (("reference", reference), ("current", current))
        if frame.height < config.min_rows
    ]
    if small:
        detail = "; ".join(small) + f" (fewer than min_rows={config.min_rows})"
        return [], [ColumnFlag(c, FLAG_TOO_FEW_ROWS, detail) for c in columns]

    assessable = []
    for column, kind in columns.items():
        missing = [
            label
            for label, frame in (("reference", reference), ("current", current))
            if column not in frame.columns
        ]
        if missing:
            flags.append(ColumnFlag(column, FLAG_MISSING, f"absent from {' and '.join(missing)}"))
            continue
        ref = _finite(reference, column)
        cur = _finite(current, column)
        if ref.len() == 0:
            flags.append(ColumnFlag(column, FLAG_ALL_NULL_REFERENCE, "no value in the reference"))
            continue
        if cur.len() == 0:
            flags.append(
                ColumnFlag(column, FLAG_ALL_NULL_CURRENT, "no value in the current window")
            )
            continue
        if min(ref.len(), cur.len()) < config.min_rows:
            flags.append(
                ColumnFlag(
                    column,
                    FLAG_TOO_FEW_VALUES,
                    f"{ref.len()} non-null value(s) in the reference and {cur.len()} in the "
                    f"current window (fewer than min_rows={config.min_rows})",
                )
            )
            continue
        if ref.n_unique() <= 1:
            constant = ref[0]
            differ = int((cur != constant).sum())
            flags.append(
                ColumnFlag(
                    column,
                    FLAG_CONSTANT,
                    f"always {constant!r} in the reference; {differ} of {cur.len()} current "
                    "value(s) differ",
                )
            )
            continue
        if kind == CATEGORICAL:
            seen = set(ref.cast(pl.String).unique().to_list())
            cur_text = cur.cast(pl.String)
            unseen_mask = ~cur_text.is_in(list(seen))
            n_unseen = int(unseen_mask.sum())
            unseen_share = n_unseen / cur.len()
            if unseen_share > config.max_unseen_share:
                unseen = sorted(set(cur_text.filter(unseen_mask).to_list()))
                shown = ", ".join(map(repr, unseen[:10])) + (" ..." if len(unseen) > 10 else "")
                flags.append(
                    ColumnFlag(
                        column,
                        FLAG_UNSEEN,
                        f"{len(unseen)} categor{'y' if len(unseen) == 1 else 'ies'} unseen in "
                        f"the reference ({shown}) on {n_unseen} of {cur.len()} current value(s) "
                        f"({unseen_share:.2%})",
                    )
                )
                continue
        assessable.append(column)
    return assessable, flags


def _to_pandas(frame: pl.DataFrame, columns: dict[str, str]) -> Any:
    """Columns as Evidently expects them: floats for numbers, text for categories."""
    exprs = []
    for column, kind in columns.items():
        col = pl.col(column)
        if kind == NUMERICAL:
            expr = col.cast(pl.Float64)
            exprs.append(pl.when(expr.is_finite()).then(expr).otherwise(None).alias(column))
        else:
            exprs.append(col.cast(pl.String).alias(column))
    return frame.select(exprs).to_pandas()


def run_drift(
    name: str,
    reference: pl.DataFrame,
    current: pl.DataFrame,
    *,
    numerical: Sequence[str] = (),
    categorical: Sequence[str] = (),
    config: MonitoringConfig | None = None,
    per_column_threshold: dict[str, float] | None = None,
    summary: bool = False,
) -> DriftResult:
    """Screen the columns, then let Evidently compute each assessable column's drift.

    Parameters
    ----------
    name
        Name of the dataset in the report (``"features"``, ``"scores"``, ...).
    reference, current
        One row per observation; only the named columns are read.
    numerical, categorical
        Columns to compare, by kind.
    config
        Screening rules, drift methods and threshold; the defaults when ``None``.
    per_column_threshold
        Thresholds that differ from ``config.drift_threshold``, by column.
    summary
        Add Evidently's ``DataSummaryPreset`` over every column that holds values in both
        windows, flagged ones included.

    Returns
    -------
    DriftResult
        The per-column verdicts of the assessed columns, the flags of the others, and the
        Evidently snapshot when anything was assessed.
    """
    config = config or MonitoringConfig()
    kinds = {c: NUMERICAL for c in numerical} | {c: CATEGORICAL for c in categorical}
    result = DriftResult(name, reference.height, current.height)
    result.row_counts = {name: (reference.height, current.height)}
    result.stats = [
        column_stats(reference, current, c, kind=k)
        for c, k in kinds.items()
        if c in reference.columns and c in current.columns
    ]

    # Screen, and stop early when nothing can be assessed.
    assessable, result.flags = screen_columns(reference, current, kinds, config)
    if result.flags and result.flags[0].reason == FLAG_TOO_FEW_ROWS:
        logger.warning("%s: not assessed: %s", name, result.flags[0].detail)
    else:
        for flag in result.flags:
            logger.warning(
                "%s: column %s left out of the drift share: %s (%s)",
                name,
                flag.column,
                flag.reason,
                flag.detail,
            )
    if not assessable:
        result.note = "no column could be assessed"
        if result.flags and result.flags[0].reason == FLAG_TOO_FEW_ROWS:
            result.note = result.flags[0].detail
        return result

    # Evidently: drift of the assessable columns, and optionally a summary of all columns.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    described = {c: k for c, k in kinds.items() if c in assessable}
    if summary:
        flagged_with_values = {
            f.column
            for f in result.flags
            if f.reason in (FLAG_CONSTANT, FLAG_UNSEEN, FLAG_TOO_FEW_VALUES)
        }
        described |= {c: k for c, k in kinds.items() if c in flagged_with_values}
    definition = DataDefinition(
        numerical_columns=[c for c, k in described.items() if k == NUMERICAL],
        categorical_columns=[c for c, k in described.items() if k == CATEGORICAL],
    )
    ref_ds = Dataset.from_pandas(_to_pandas(reference, described), data_definition=definition)
    cur_ds = Dataset.from_pandas(_to_pandas(current, described), data_definition=definition)
    items: list[Any] = [
        DataDriftPreset(
            columns=assessable,
            num_method=config.num_method,
            cat_method=config.cat_method,
            threshold=config.drift_threshold,
            per_column_threshold=per_column_threshold or None,
        )
    ]
    if summary:
        items.append(DataSummaryPreset())
    snapshot = Report(items, include_tests=True).run(cur_ds, ref_ds, name=name)
    result.snapshots = {name: snapshot}
    result.columns = _column_drifts(snapshot.dict(), described)
    missing = set(assessable) - {c.column for c in result.columns}
    if missing:
        raise MonitoringError(f"{name}: Evidently returned no drift verdict for {sorted(missing)}.")
    logger.info(
        "%s: %d of %d assessed column(s) drifted, %d flagged",
        name,
        result.n_drifted,
        len(result.columns),
        len(result.flagged_columns()),
    )
    return result


def _column_drifts(report: dict[str, Any], kinds: dict[str, str]) -> list[ColumnDrift]:
    """Per-column score, method and verdict from a snapshot's ``dict()``."""
    verdicts: dict[str, bool] = {}
    for test in report.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith(":ValueDrift"):
            verdicts[params["column"]] = test.get("status") == "FAIL"
    drifts = []
    for metric in report.get("metrics", []):
        config = metric.get("config", {})
        if not config.get("type", "").endswith(":ValueDrift"):
            continue
        column = config["column"]
        if column not in verdicts:
            continue
        score = metric.get("value")
        drifts.append(
            ColumnDrift(
                column=column,
                kind=kinds.get(column, NUMERICAL),
                method=str(config.get("method")),
                threshold=float(config.get("threshold") or math.nan),
                score=float(score) if score is not None else math.nan,
                drifted=verdicts[column],
            )
        )
    return drifts


def combine(name: str, parts: Sequence[DriftResult]) -> DriftResult:
    """One result over several datasets (the views of a feature service, say).

    Columns, flags, statistics and snapshots are pooled, so the drift share counts every
    assessed column of every part once.
    """
    result = DriftResult(
        name,
        sum(p.n_reference for p in parts),
        sum(p.n_current for p in parts),
    )
    notes = []
    for part in parts:
        result.columns.extend(part.columns)
        result.flags.extend(part.flags)
        result.stats.extend(part.stats)
        result.snapshots.update(part.snapshots)
        result.row_counts.update(part.row_counts)
        if part.note:
            notes.append(f"{part.name}: {part.note}")
    if not result.columns:
        result.note = "; ".join(notes) or "no column could be assessed"
    elif notes:
        result.note = "; ".join(notes)
    return result
