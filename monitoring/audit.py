"""What the service served, read from its audit log, and the online figures behind it.

The log is JSON lines, one file per UTC day (``YYYY-MM-DD.jsonl``), with the ``AUDIT_*``
keys of :mod:`feature_repo.schema`. A missing folder, an empty file or a window without
records is not an error here: the caller reports that nothing could be assessed. Lines
that are not valid JSON (a torn last line after a crash) are skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from feature_repo import schema as S
from monitoring.windows import Window

logger = logging.getLogger(__name__)

NO_FALLBACK = "none"
SOURCES_JOINED = "sources"
AUDIT_SCHEMA: dict[str, pl.DataType] = {
    S.AUDIT_REQUEST_ID: pl.String(),
    S.AUDIT_TIMESTAMP: pl.String(),
    S.AUDIT_ENDPOINT: pl.String(),
    S.AUDIT_USER: pl.String(),
    S.AUDIT_IS_GUEST: pl.Boolean(),
    S.AUDIT_MODEL_VERSION: pl.String(),
    S.AUDIT_K: pl.Int64(),
    S.AUDIT_ITEMS: pl.List(pl.String()),
    S.AUDIT_SCORES: pl.List(pl.Float64()),
    S.AUDIT_SOURCES: pl.List(pl.List(pl.String())),
    S.AUDIT_FALLBACK: pl.String(),
    S.AUDIT_LATENCY_MS: pl.Float64(),
}


def _file_day(path: Path) -> datetime | None:
    try:
        return datetime.strptime(path.stem, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


def audit_files(audit_dir: Path, window: Window | None = None) -> list[Path]:
    """The daily files under ``audit_dir`` whose day overlaps ``window`` (all when None)."""
    if not Path(audit_dir).is_dir():
        return []
    files = []
    for path in sorted(Path(audit_dir).glob("*.jsonl")):
        day = _file_day(path)
        if day is None:
            logger.warning("audit: ignoring %s, not named YYYY-MM-DD.jsonl", path)
            continue
        if window is None or Window(day, day + timedelta(days=1)).overlaps(window):
            files.append(path)
    return files


def audit_span(audit_dir: Path) -> Window | None:
    """``[first day, day after the last)`` of the audit files, or None when there are none."""
    days = [
        day
        for path in audit_files(audit_dir)
        if (day := _file_day(path)) is not None and path.stat().st_size > 0
    ]
    if not days:
        return None
    return Window(min(days), max(days) + timedelta(days=1))


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=AUDIT_SCHEMA).with_columns(
        pl.col(S.AUDIT_TIMESTAMP).str.to_datetime(time_zone="UTC", time_unit="us")
    )


def _read_file(path: Path) -> tuple[list[dict[str, object]], int]:
    records: list[dict[str, object]] = []
    bad = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(record, dict):
                records.append({k: record.get(k) for k in AUDIT_SCHEMA})
            else:
                bad += 1
    return records, bad


def read_audit(audit_dir: Path, window: Window | None = None) -> pl.DataFrame:
    """Audit records with their time in ``window``, one row per response.

    Returns a frame with the ``AUDIT_*`` columns; ``timestamp`` is tz-aware UTC. Empty
    (with the same columns) when there is no record.
    """
    records: list[dict[str, object]] = []
    bad = 0
    for path in audit_files(audit_dir, window):
        file_records, file_bad = _read_file(path)
        records.extend(file_records)
        bad += file_bad
    if bad:
        logger.warning("audit: skipped %d line(s) that are not JSON objects", bad)
    if not records:
        return _empty()
    frame = pl.DataFrame(records, schema=AUDIT_SCHEMA, orient="row", strict=False)
    frame = frame.with_columns(
        pl.col(S.AUDIT_TIMESTAMP).str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    )
    unparsed = frame[S.AUDIT_TIMESTAMP].null_count()
    if unparsed:
        logger.warning("audit: skipped %d record(s) without a readable timestamp", unparsed)
    frame = frame.filter(pl.col(S.AUDIT_TIMESTAMP).is_not_null())
    if window is not None:
        frame = frame.filter(
            pl.col(S.AUDIT_TIMESTAMP).is_between(window.start, window.end, closed="left")
        )
    return frame


def requests_frame(audit: pl.DataFrame) -> pl.DataFrame:
    """One row per response: its top score, size, fallback reason, guest flag, latency."""
    return audit.select(
        pl.col(S.AUDIT_REQUEST_ID),
        pl.col(S.AUDIT_TIMESTAMP),
        pl.col(S.AUDIT_MODEL_VERSION),
        pl.col(S.AUDIT_FALLBACK).fill_null(NO_FALLBACK).alias(S.AUDIT_FALLBACK),
        pl.when(pl.col(S.AUDIT_FALLBACK).is_null())
        .then(pl.col(S.AUDIT_SCORES).list.first())
        .alias("top_score"),
        pl.col(S.AUDIT_ITEMS).list.len().alias("n_items"),
        pl.col(S.AUDIT_IS_GUEST).cast(pl.String).alias(S.AUDIT_IS_GUEST),
        pl.col(S.AUDIT_LATENCY_MS),
    )


def impressions_frame(audit: pl.DataFrame) -> pl.DataFrame:
    """One row per served item: request, item, rank (from 1), score, fallback, sources.

    ``sources`` joins the sorted names of the retrievers that proposed the item with
    ``+``; ``fallback`` is ``"none"`` for a personalised answer.
    """
    if audit.height == 0:
        return pl.DataFrame(
            schema={
                S.AUDIT_REQUEST_ID: pl.String,
                S.ITEM_ID: pl.String,
                "rank": pl.Int64,
                "score": pl.Float64,
                S.AUDIT_FALLBACK: pl.String,
                SOURCES_JOINED: pl.String,
            }
        )
    base = audit.select(
        pl.col(S.AUDIT_REQUEST_ID),
        pl.col(S.AUDIT_FALLBACK).fill_null(NO_FALLBACK),
        pl.col(S.AUDIT_ITEMS),
        # Scores and sources may be shorter than items in a malformed record: pad with null.
        pl.col(S.AUDIT_SCORES).fill_null([]),
        pl.col(S.AUDIT_SOURCES).fill_null([]),
        pl.int_ranges(1, pl.col(S.AUDIT_ITEMS).list.len() + 1).alias("rank"),
    ).filter(pl.col(S.AUDIT_ITEMS).list.len() > 0)
    exploded = base.with_columns(
        pl.col(S.AUDIT_SCORES).list.gather(pl.col("rank") - 1, null_on_oob=True),
        pl.col(S.AUDIT_SOURCES).list.gather(pl.col("rank") - 1, null_on_oob=True),
    ).explode([S.AUDIT_ITEMS, S.AUDIT_SCORES, S.AUDIT_SOURCES, "rank"])
    return exploded.select(
        pl.col(S.AUDIT_REQUEST_ID),
        pl.col(S.AUDIT_ITEMS).alias(S.ITEM_ID),
        pl.col("rank").cast(pl.Int64),
        pl.col(S.AUDIT_SCORES).alias("score"),
        pl.col(S.AUDIT_FALLBACK),
        pl.col(S.AUDIT_SOURCES)
        .list.unique()
        .list.sort()
        .list.join("+")
        .replace("", None)
        .alias(SOURCES_JOINED),
    )


def gini(counts: list[int] | pl.Series, n_items: int | None = None) -> float:
    """Gini coefficient of how impressions spread over items (0 even, 1 all on one item).

    ``n_items`` pads with never-served items, so concentration is measured against the
    whole catalogue.
    """
    values = pl.Series(list(counts), dtype=pl.Float64)
    if n_items is not None and n_items > values.len():
        values = pl.concat([values, pl.zeros(n_items - values.len(), dtype=pl.Float64, eager=True)])
    n = values.len()
    total = float(values.sum())
    if n == 0 or total == 0:
        return math.nan
    ordered = values.sort()
    ranks = pl.int_range(1, n + 1, eager=True).cast(pl.Float64)
    weighted = float((ordered * ranks).sum())
    return (2.0 * weighted) / (n * total) - (n + 1.0) / n


@dataclass
class OutputFigures:
    """Online figures of one window of served answers."""

    n_requests: int = 0
    n_impressions: int = 0
    fallback_rate: float | None = None
    fallback_by_reason: dict[str, float] = field(default_factory=dict)
    guest_share: float | None = None
    source_share: dict[str, float] = field(default_factory=dict)
    coverage: float | None = None
    coverage_sample_requests: int = 0
    gini: float | None = None
    top10_share: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    model_versions: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        def clean(v: object) -> object:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {k: clean(v) for k, v in self.__dict__.items()}


def output_figures(
    audit: pl.DataFrame, *, catalogue_size: int, sample_requests: int, random_state: int = 0
) -> OutputFigures:
    """Fallback rate, source mix, coverage and concentration of one window's answers.

    Coverage (distinct items served over the catalogue) and concentration grow or shrink
    with the number of requests, so both are measured on ``sample_requests`` requests drawn
    at random, the same number in each window compared.
    """
    figures = OutputFigures(n_requests=audit.height)
    if audit.height == 0:
        return figures
    requests = requests_frame(audit)
    impressions = impressions_frame(audit)
    figures.n_impressions = impressions.height
    is_fallback = (requests[S.AUDIT_FALLBACK] != NO_FALLBACK).cast(pl.Float64)
    figures.fallback_rate = float(is_fallback.mean() or 0.0)  # type: ignore[arg-type]
    by_reason = requests[S.AUDIT_FALLBACK].value_counts()
    figures.fallback_by_reason = {
        str(r): n / audit.height
        for r, n in zip(by_reason[S.AUDIT_FALLBACK], by_reason["count"], strict=True)
        if r != NO_FALLBACK
    }
    figures.guest_share = float(audit[S.AUDIT_IS_GUEST].cast(pl.Float64).mean() or 0.0)  # type: ignore[arg-type]
    if impressions.height:
        per_source = (
            impressions.select(pl.col(SOURCES_JOINED).str.split("+"))
            .explode(SOURCES_JOINED)
            .drop_nulls()
            .group_by(SOURCES_JOINED)
            .len()
        )
        figures.source_share = dict(
            sorted(
                (str(s), n / impressions.height)
                for s, n in zip(per_source[SOURCES_JOINED], per_source["len"], strict=True)
            )
        )
    latency = requests[S.AUDIT_LATENCY_MS].drop_nulls()
    if latency.len():
        figures.latency_p50_ms = float(latency.quantile(0.5) or 0.0)
        figures.latency_p95_ms = float(latency.quantile(0.95) or 0.0)
    versions = audit[S.AUDIT_MODEL_VERSION].fill_null("unknown").value_counts()
    figures.model_versions = dict(
        zip(versions[S.AUDIT_MODEL_VERSION], versions["count"], strict=True)
    )

    # Coverage and concentration on an equal number of requests.
    n = max(1, min(sample_requests, audit.height))
    sample = audit.sample(n, seed=random_state) if n < audit.height else audit
    served = impressions_frame(sample).group_by(S.ITEM_ID).len()
    figures.coverage_sample_requests = n
    if catalogue_size > 0:
        figures.coverage = served.height / catalogue_size
    figures.gini = gini(served["len"], catalogue_size or None)
    total = float(served["len"].sum())
    if total:
        figures.top10_share = float(served["len"].sort(descending=True).head(10).sum()) / total
    return figures
