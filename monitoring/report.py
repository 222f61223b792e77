"""One monitoring run: compute every section, decide, write the report and refresh the index.

A run writes ``<reports>/<YYYYmmddTHHMMSSZ>-<name>/report.html`` and ``summary.json``, and
rewrites ``<reports>/index.html`` from every summary found there.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from feature_repo import schema as S
from feature_repo.config import Settings
from monitoring.audit import (
    SOURCES_JOINED,
    OutputFigures,
    audit_span,
    impressions_frame,
    output_figures,
    read_audit,
    requests_frame,
)
from monitoring.config import MonitoringConfig
from monitoring.decision import Decision, decide
from monitoring.drift import DriftResult, MonitoringError, combine, run_drift
from monitoring.quality import QualityResult, quarantine_rates
from monitoring.windows import Window, default_windows

if TYPE_CHECKING:
    from feast import FeatureStore

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
INDEX_FILE = "index.html"


@dataclass
class RunResult:
    """Everything one run computed, and where it was written."""

    name: str
    created: datetime
    data_dir: Path
    config: MonitoringConfig
    reference: Window
    current: Window
    feature_service: str = S.RANKER_SERVICE
    audit_reference: Window | None = None
    audit_current: Window | None = None
    audit_notes: list[str] = field(default_factory=list)
    features: DriftResult | None = None
    scores: DriftResult | None = None
    requests: DriftResult | None = None
    output_reference: OutputFigures | None = None
    output_current: OutputFigures | None = None
    score_values: tuple[list[float], list[float]] | None = None
    quality: QualityResult | None = None
    decision: Decision = field(default_factory=Decision)
    timings_s: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None

    @property
    def html_path(self) -> Path | None:
        return self.folder / REPORT_FILE if self.folder else None

    @property
    def json_path(self) -> Path | None:
        return self.folder / SUMMARY_FILE if self.folder else None

    def summary(self) -> dict[str, Any]:
        """The JSON summary: windows, headline figures, every section, the decision."""
        features = self.features
        ref, cur = self.output_reference, self.output_current
        flagged: dict[str, list[str]] = {}
        for result in (self.features, self.scores, self.requests):
            if result is not None and result.flags:
                flagged[result.name] = result.flagged_columns()
        score = self.scores.column("score") if self.scores else None
        return _json_safe(
            {
                "name": self.name,
                "created": self.created.isoformat(),
                "data_dir": str(self.data_dir),
                "windows": {
                    "reference": self.reference.to_json(),
                    "current": self.current.to_json(),
                    "reference_label": self.reference.label(),
                    "current_label": self.current.label(),
                    "audit_reference": (
                        self.audit_reference.to_json() if self.audit_reference else None
                    ),
                    "audit_current": self.audit_current.to_json() if self.audit_current else None,
                    "audit_notes": self.audit_notes,
                },
                "decision": self.decision.to_json(),
                "figures": {
                    "feature_drift_share": features.drift_share if features else None,
                    "features_assessed": len(features.columns) if features else 0,
                    "features_drifted": features.n_drifted if features else 0,
                    "score_drift": score.score if score else None,
                    "score_drifted": score.drifted if score else None,
                    "fallback_rate_reference": ref.fallback_rate if ref else None,
                    "fallback_rate_current": cur.fallback_rate if cur else None,
                    "coverage_reference": ref.coverage if ref else None,
                    "coverage_current": cur.coverage if cur else None,
                    "gini_reference": ref.gini if ref else None,
                    "gini_current": cur.gini if cur else None,
                },
                "flagged_columns": flagged,
                "features": features.to_json() if features else None,
                "scores": self.scores.to_json() if self.scores else None,
                "requests": self.requests.to_json() if self.requests else None,
                "output": {
                    "reference": ref.to_json() if ref else None,
                    "current": cur.to_json() if cur else None,
                },
                "data_quality": self.quality.to_json() if self.quality else None,
                "config": self.config.to_json(),
                "timings_s": self.timings_s,
                "report_html": REPORT_FILE,
            }
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def slug(name: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    return text[:60] or "drift"


def resolve_audit_windows(
    audit_dir: Path, reference: Window, current: Window, *, explicit: bool, min_rows: int
) -> tuple[Window, Window, list[str]]:
    """The windows the score and mix sections compare, with a note when they differ.

    Explicit windows are used as given. With the default windows, when the audit log holds
    too few answers in the reference window (the service's log usually starts after
    training ends), the log's own span inside the current window is split into two halves
    of whole days, earlier half as reference.
    """
    if explicit:
        return reference, current, []
    n_reference = read_audit(audit_dir, reference).height
    if n_reference >= min_rows:
        return reference, current, []
    span = audit_span(audit_dir)
    if span is None:
        return reference, current, []
    inside = (
        Window(max(span.start, current.start), min(span.end, current.end))
        if (span.overlaps(current))
        else span
    )
    days = int(inside.days)
    if days < 2:
        return (
            reference,
            current,
            [
                f"The audit log holds {n_reference} answer(s) in the reference window and spans "
                f"only {inside.label()}: the score and mix sections compare the windows as given."
            ],
        )
    middle = inside.start + timedelta(days=days // 2)
    audit_reference, audit_current = Window(inside.start, middle), Window(middle, inside.end)
    return (
        audit_reference,
        audit_current,
        [
            f"The audit log holds {n_reference} answer(s) in the reference window "
            f"{reference.label()} (it spans {span.label()}), so the score and mix sections "
            f"compare its two halves: {audit_reference.label()} against {audit_current.label()}."
        ],
    )


def _catalogue_size(settings: Settings) -> int:
    if not settings.paths.items.exists():
        return 0
    return int(pl.scan_parquet(settings.paths.items).select(pl.len()).collect().item())


def run_report(
    settings: Settings,
    *,
    reference: Window | None = None,
    current: Window | None = None,
    audit_reference: Window | None = None,
    audit_current: Window | None = None,
    name: str = "drift",
    config: MonitoringConfig | None = None,
    reports_dir: Path | None = None,
    store: FeatureStore | None = None,
    progress: Callable[[str], None] | None = None,
    write: bool = True,
) -> RunResult:
    """Compute every section for two windows, decide, and write the report.

    Parameters
    ----------
    settings
        Where the events, feature store and audit log are.
    reference, current
        The windows compared; by default the four weeks before training ends and the
        latest four weeks of the log.
    audit_reference, audit_current
        Windows of the score and mix sections; by default the same windows, or halves of
        the audit log when it holds nothing in the default reference window.
    name
        Name of the run, shown in the report and used in its folder name.
    config
        Thresholds and sample sizes.
    reports_dir
        Folder of the reports and the index; ``settings.paths.reports`` by default.
    store
        An open feature store, to reuse between runs.
    progress
        Called with the name of each step as it starts.
    write
        Write the HTML, the JSON summary and the index.
    """
    config = config or MonitoringConfig()
    step = progress or (lambda _: None)
    explicit = reference is not None or current is not None
    if reference is None or current is None:
        default_reference, default_current = default_windows(
            settings.paths, window_days=config.window_days
        )
        reference = reference or default_reference
        current = current or default_current
    run = RunResult(
        name=name,
        created=datetime.now(UTC).replace(microsecond=0),
        data_dir=settings.data_dir,
        config=config,
        reference=reference,
        current=current,
    )
    logger.info("drift %r: reference %s, current %s", name, reference.label(), current.label())

    # Feature drift of the ranker's feature service, point in time from the offline store.
    step("features")
    started = time.perf_counter()
    try:
        from monitoring.features import feature_frames

        views = feature_frames(settings, reference, current, config=config, store=store)
        run.features = combine(
            "features",
            [
                run_drift(
                    view.view,
                    view.reference,
                    view.current,
                    numerical=view.numerical,
                    categorical=view.categorical,
                    config=config,
                    summary=True,
                )
                for view in views
            ],
        )
    except MonitoringError as exc:
        logger.warning("features: not assessed: %s", exc)
        run.features = DriftResult("features", 0, 0, note=str(exc).split("\n")[0])
    run.timings_s["features"] = time.perf_counter() - started

    # Scores and output mix from the audit log.
    step("scores and mix")
    started = time.perf_counter()
    audit_dir = settings.paths.audit_log
    if audit_reference is None or audit_current is None:
        audit_reference, audit_current, run.audit_notes = resolve_audit_windows(
            audit_dir, reference, current, explicit=explicit, min_rows=config.min_rows
        )
    run.audit_reference, run.audit_current = audit_reference, audit_current
    audit_ref = read_audit(audit_dir, audit_reference)
    audit_cur = read_audit(audit_dir, audit_current)
    if audit_ref.height == 0 or audit_cur.height == 0:
        run.audit_notes.append(
            f"The audit log at {audit_dir} holds {audit_ref.height} answer(s) in "
            f"{audit_reference.label()} and {audit_cur.height} in {audit_current.label()}."
        )
    _score_sections(run, audit_ref, audit_cur, config, _catalogue_size(settings))
    run.timings_s["scores"] = time.perf_counter() - started

    # Data quality of the ingest.
    step("data quality")
    started = time.perf_counter()
    run.quality = quarantine_rates(settings.paths, reference, current, config)
    run.timings_s["quality"] = time.perf_counter() - started

    # The decision, then the files.
    run.decision = decide(
        features=run.features,
        scores=run.scores,
        output_reference=run.output_reference,
        output_current=run.output_current,
        quality=run.quality,
        config=config,
    )
    if write:
        step("writing the report")
        started = time.perf_counter()
        write_run(run, reports_dir or settings.paths.reports)
        run.timings_s["write"] = time.perf_counter() - started
    return run


def _score_sections(
    run: RunResult,
    audit_ref: pl.DataFrame,
    audit_cur: pl.DataFrame,
    config: MonitoringConfig,
    catalogue_size: int,
) -> None:
    """Score drift, request drift and the online figures of both audit windows."""
    sample = max(1, min(audit_ref.height, audit_cur.height))
    run.output_reference = output_figures(
        audit_ref,
        catalogue_size=catalogue_size,
        sample_requests=sample,
        random_state=config.random_state,
    )
    run.output_current = output_figures(
        audit_cur,
        catalogue_size=catalogue_size,
        sample_requests=sample,
        random_state=config.random_state,
    )
    versions_ref = set(run.output_reference.model_versions)
    versions_cur = set(run.output_current.model_versions)
    if versions_ref and versions_cur and versions_ref != versions_cur:
        run.audit_notes.append(
            f"Model versions differ between the windows ({sorted(versions_ref)} against "
            f"{sorted(versions_cur)}): score drift may come from the model change."
        )

    # Scores of personalised answers only: fallback lists carry popularity scores.
    def personalised(audit: pl.DataFrame) -> pl.DataFrame:
        return impressions_frame(audit).filter(pl.col(S.AUDIT_FALLBACK) == "none")

    imp_ref, imp_cur = personalised(audit_ref), personalised(audit_cur)
    run.score_values = (
        imp_ref["score"].drop_nulls().to_list(),
        imp_cur["score"].drop_nulls().to_list(),
    )
    run.scores = run_drift(
        "scores",
        imp_ref,
        imp_cur,
        numerical=["score", "rank"],
        categorical=[SOURCES_JOINED],
        config=config,
        per_column_threshold=(
            {"score": config.score_threshold} if config.score_threshold is not None else None
        ),
    )
    run.requests = run_drift(
        "requests",
        requests_frame(audit_ref),
        requests_frame(audit_cur),
        numerical=["top_score", "n_items", S.AUDIT_LATENCY_MS],
        categorical=[S.AUDIT_FALLBACK, S.AUDIT_IS_GUEST],
        config=config,
    )


def write_run(run: RunResult, reports_dir: Path) -> Path:
    """Write the run's folder (HTML and JSON) and refresh the index; returns the folder."""
    from monitoring.html import render_report

    reports_dir = Path(reports_dir)
    folder = reports_dir / f"{run.created:%Y%m%dT%H%M%SZ}-{slug(run.name)}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = reports_dir / f"{run.created:%Y%m%dT%H%M%SZ}-{slug(run.name)}-{suffix}"
    folder.mkdir(parents=True)
    run.folder = folder
    (folder / REPORT_FILE).write_text(render_report(run), encoding="utf-8")
    (folder / SUMMARY_FILE).write_text(json.dumps(run.summary(), indent=1), encoding="utf-8")
    write_index(reports_dir)
    logger.info("report written to %s", folder / REPORT_FILE)
    return folder


def list_summaries(reports_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(folder name, summary)`` of every report under ``reports_dir``, newest first."""
    found = []
    for path in Path(reports_dir).glob(f"*/{SUMMARY_FILE}"):
        try:
            found.append((path.parent.name, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("index: skipping unreadable %s: %s", path, exc)
    return sorted(found, key=lambda s: (str(s[1].get("created", "")), s[0]), reverse=True)


def write_index(reports_dir: Path) -> Path:
    """Rewrite ``index.html`` listing every report, newest first."""
    from monitoring.html import render_index

    path = Path(reports_dir) / INDEX_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_index(list_summaries(reports_dir)), encoding="utf-8")
    return path


def latest_summary(reports_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest summary under ``reports_dir``.

    Raises
    ------
    MonitoringError
        When there is none.
    """
    summaries = list_summaries(reports_dir)
    if not summaries:
        raise MonitoringError(
            f"no drift report under {reports_dir}.\nHint: run `make drift` first."
        )
    folder, summary = summaries[0]
    return Path(reports_dir) / folder, summary
