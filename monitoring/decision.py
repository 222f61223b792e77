"""The retraining decision: each configured check, its figure, and whether it fired.

Retraining is due when any assessed check fires. A check without data (no features, an
empty audit log) is reported as not assessed and never fires; when no check at all could
be assessed the decision says so, and the ``check`` command exits with its own status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from monitoring.audit import OutputFigures
from monitoring.config import MonitoringConfig
from monitoring.drift import DriftResult
from monitoring.quality import QualityResult

logger = logging.getLogger(__name__)

SCORE_COLUMN = "score"


@dataclass(frozen=True)
class Check:
    """One retraining rule evaluated on one run."""

    name: str
    assessed: bool
    fired: bool
    value: float | None
    threshold: float | None
    detail: str

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class Decision:
    """Every check, the data-quality alerts, and the verdict."""

    checks: list[Check] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)

    @property
    def retrain(self) -> bool:
        return any(c.fired for c in self.checks)

    @property
    def assessed(self) -> bool:
        return any(c.assessed for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if c.fired]

    @property
    def verdict(self) -> str:
        if self.retrain:
            return "retraining due"
        return "no retraining needed" if self.assessed else "cannot decide: nothing assessed"

    def to_json(self) -> dict[str, object]:
        return {
            "retrain": self.retrain,
            "assessed": self.assessed,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "checks": [c.to_json() for c in self.checks],
            "data_quality_alerts": self.alerts,
        }

    def text(self) -> str:
        """The decision and the figures behind it, for the terminal."""
        lines = [f"Decision: {self.verdict.upper()}"]
        for check in self.checks:
            mark = "FIRED" if check.fired else ("ok" if check.assessed else "n/a")
            lines.append(f"  [{mark:>5}] {check.name:<24} {check.detail}")
        for alert in self.alerts:
            lines.append(f"  [alert] data quality             {alert}")
        return "\n".join(lines)


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if pct else f"{value:.3f}"


def decide(
    *,
    features: DriftResult | None,
    scores: DriftResult | None,
    output_reference: OutputFigures | None,
    output_current: OutputFigures | None,
    quality: QualityResult | None,
    config: MonitoringConfig,
) -> Decision:
    """Evaluate every retraining check of ``config`` on one run's results."""
    decision = Decision()

    # Share of drifted features.
    share = features.drift_share if features is not None else None
    if share is None:
        why = (features.note if features is not None else None) or "no feature was assessed"
        decision.checks.append(
            Check(
                "feature_drift_share",
                False,
                False,
                None,
                config.max_drift_share,
                f"not assessed: {why}",
            )
        )
    else:
        assert features is not None
        flagged = len(features.flagged_columns())
        decision.checks.append(
            Check(
                "feature_drift_share",
                True,
                share >= config.max_drift_share,
                share,
                config.max_drift_share,
                f"{features.n_drifted} of {len(features.columns)} assessed features drifted "
                f"({share:.0%}; due at >= {config.max_drift_share:.0%})"
                + (f"; {flagged} flagged and left out" if flagged else ""),
            )
        )

    # Drift of the served scores.
    score = scores.column(SCORE_COLUMN) if scores is not None else None
    if score is None:
        why = (scores.note if scores is not None else None) or "no scores to compare"
        decision.checks.append(
            Check("score_drift", False, False, None, config.score_threshold, f"not assessed: {why}")
        )
    else:
        decision.checks.append(
            Check(
                "score_drift",
                True,
                score.drifted,
                score.score,
                score.threshold,
                f"{score.method} of the served scores {score.score:.3f} "
                f"(threshold {score.threshold:.3f}): {'drifted' if score.drifted else 'stable'}",
            )
        )

    # Online proxies: fallback rate and catalogue coverage.
    ref, cur = output_reference, output_current
    empty = [
        label
        for label, figures in (("reference", ref), ("current", cur))
        if figures is None or not figures.n_requests
    ]
    no_answers = (
        "not assessed: no served answers in the " + " and the ".join(empty) + " window"
        if empty
        else "not assessed: no catalogue, or nothing of it served in the reference window"
    )
    if ref is None or cur is None or ref.fallback_rate is None or cur.fallback_rate is None:
        decision.checks.append(
            Check(
                "fallback_rate_increase",
                False,
                False,
                None,
                config.max_fallback_rate_increase,
                no_answers,
            )
        )
    else:
        increase = cur.fallback_rate - ref.fallback_rate
        decision.checks.append(
            Check(
                "fallback_rate_increase",
                True,
                increase > config.max_fallback_rate_increase,
                increase,
                config.max_fallback_rate_increase,
                f"fallback answers {_fmt(ref.fallback_rate, True)} -> "
                f"{_fmt(cur.fallback_rate, True)} ({increase * 100:+.1f} points; due above "
                f"+{config.max_fallback_rate_increase * 100:.1f})",
            )
        )
    if ref is None or cur is None or not ref.coverage or cur.coverage is None:
        decision.checks.append(
            Check(
                "coverage_drop",
                False,
                False,
                None,
                config.max_coverage_drop,
                no_answers,
            )
        )
    else:
        drop = 1.0 - cur.coverage / ref.coverage
        decision.checks.append(
            Check(
                "coverage_drop",
                True,
                drop > config.max_coverage_drop,
                drop,
                config.max_coverage_drop,
                f"catalogue coverage {_fmt(ref.coverage, True)} -> {_fmt(cur.coverage, True)} "
                f"on {cur.coverage_sample_requests} requests each ({-drop:+.0%}; due below "
                f"-{config.max_coverage_drop:.0%})",
            )
        )

    # Data quality raises alerts, not retraining.
    if quality is not None:
        for rate in quality.alerts:
            decision.alerts.append(
                f"quarantine '{rate.reason}' {rate.rate_reference:.2%} -> {rate.rate_current:.2%}"
                " of rows read"
            )
    logger.info("decision: %s", decision.verdict)
    return decision
