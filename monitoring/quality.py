"""Data quality of the ingest: quarantine rates by reason, current window against reference.

A row's rate is counted against every row read on its day (events plus quarantined rows),
so a reason's rate is comparable between windows of different traffic. Rows whose date
could not be read carry no usable day and are reported apart, from the ingest report.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from feature_repo import schema as S
from feature_repo.config import Paths
from feature_repo.ingest import scan_events, scan_quarantine
from monitoring.config import MonitoringConfig
from monitoring.windows import Window

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReasonRate:
    """Quarantine rate of one reason in both windows."""

    reason: str
    count_reference: int
    count_current: int
    rate_reference: float
    rate_current: float
    alert: bool

    @property
    def increase(self) -> float:
        return self.rate_current - self.rate_reference

    @property
    def ratio(self) -> float:
        if self.rate_reference == 0:
            return math.inf if self.rate_current > 0 else 1.0
        return self.rate_current / self.rate_reference

    def to_json(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "count_reference": self.count_reference,
            "count_current": self.count_current,
            "rate_reference": self.rate_reference,
            "rate_current": self.rate_current,
            "increase": self.increase,
            "ratio": self.ratio if math.isfinite(self.ratio) else None,
            "alert": self.alert,
        }


@dataclass
class QualityResult:
    """Quarantine rates of both windows, alerts, and the latest ingest's figures."""

    rows_reference: int = 0
    rows_current: int = 0
    reasons: list[ReasonRate] = field(default_factory=list)
    undated_rows: int = 0
    ingest: dict[str, object] = field(default_factory=dict)
    note: str | None = None

    @property
    def assessed(self) -> bool:
        return self.rows_reference > 0 and self.rows_current > 0

    @property
    def alerts(self) -> list[ReasonRate]:
        return [r for r in self.reasons if r.alert]

    def rate(self, which: str) -> float | None:
        rows = self.rows_reference if which == "reference" else self.rows_current
        if not rows:
            return None
        count = sum(
            r.count_reference if which == "reference" else r.count_current for r in self.reasons
        )
        return count / rows

    def to_json(self) -> dict[str, object]:
        return {
            "assessed": self.assessed,
            "rows_reference": self.rows_reference,
            "rows_current": self.rows_current,
            "quarantine_rate_reference": self.rate("reference"),
            "quarantine_rate_current": self.rate("current"),
            "reasons": [r.to_json() for r in self.reasons],
            "alerts": [r.reason for r in self.alerts],
            "undated_rows": self.undated_rows,
            "ingest": self.ingest,
            "note": self.note,
        }


def _day_counts(frame: pl.LazyFrame, window: Window, by: list[str]) -> pl.DataFrame:
    start: date = window.start.date()
    end: date = window.end.date()
    return (
        frame.filter((pl.col(S.DAY) >= start) & (pl.col(S.DAY) < end)).group_by(by).len().collect()
    )


def quarantine_rates(
    paths: Paths, reference: Window, current: Window, config: MonitoringConfig
) -> QualityResult:
    """Quarantine rate of every reason in both windows, with an alert where it jumped."""
    result = QualityResult()
    if paths.ingest_report.exists():
        result.ingest = json.loads(paths.ingest_report.read_text())
    has_events = paths.events.exists() and any(paths.events.glob("**/*.parquet"))
    if not has_events:
        result.note = f"no ingested events under {paths.events}"
        return result
    has_quarantine = paths.quarantine.exists() and any(paths.quarantine.glob("**/*.parquet"))

    counts: dict[str, dict[str, int]] = {}
    for label, window in (("reference", reference), ("current", current)):
        events = _day_counts(scan_events(paths), window, [S.DAY])
        n_events = int(events["len"].sum()) if events.height else 0
        by_reason: dict[str, int] = {}
        if has_quarantine:
            quarantined = _day_counts(scan_quarantine(paths), window, [S.REASON])
            by_reason = dict(
                zip(quarantined[S.REASON], quarantined["len"].cast(pl.Int64), strict=True)
            )
        counts[label] = by_reason
        rows = n_events + sum(by_reason.values())
        if label == "reference":
            result.rows_reference = rows
        else:
            result.rows_current = rows
    if has_quarantine:
        undated = (
            scan_quarantine(paths)
            .filter(pl.col(S.DAY) == date(1970, 1, 1))
            .select(pl.len())
            .collect()
            .item()
        )
        result.undated_rows = int(undated)

    # Compare every reason seen in either window (and every known one, at zero).
    reasons = sorted(set(S.REASONS) | set(counts["reference"]) | set(counts["current"]))
    for reason in reasons:
        n_ref = counts["reference"].get(reason, 0)
        n_cur = counts["current"].get(reason, 0)
        rate_ref = n_ref / result.rows_reference if result.rows_reference else 0.0
        rate_cur = n_cur / result.rows_current if result.rows_current else 0.0
        ratio = rate_cur / rate_ref if rate_ref else (math.inf if rate_cur else 1.0)
        alert = (
            result.assessed
            and rate_cur - rate_ref > config.max_quarantine_rate_increase
            and ratio >= config.min_quarantine_rate_ratio
        )
        result.reasons.append(ReasonRate(reason, n_ref, n_cur, rate_ref, rate_cur, alert))
    if not result.assessed:
        result.note = "a window holds no ingested rows"
    for rate in result.alerts:
        logger.warning(
            "data quality: %s rose from %.2f%% to %.2f%% of rows read",
            rate.reason,
            100 * rate.rate_reference,
            100 * rate.rate_current,
        )
    return result
