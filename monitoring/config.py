"""Thresholds and sampling sizes of the drift monitoring.

Defaults live in :class:`MonitoringConfig`. A TOML file (``--config`` on the command line,
or the ``SHELFWISE_MONITORING_CONFIG`` variable) overrides any of them from a
``[monitoring]`` table, for example::

    [monitoring]
    max_drift_share = 0.3
    max_fallback_rate_increase = 0.05
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from feature_repo.errors import ConfigError

logger = logging.getLogger(__name__)

CONFIG_ENV = "SHELFWISE_MONITORING_CONFIG"


@dataclass(frozen=True)
class MonitoringConfig:
    """What counts as drift, and when retraining is due.

    Parameters
    ----------
    max_drift_share
        Retraining is due when at least this share of the assessed features drifted.
    num_method, cat_method, drift_threshold
        Evidently's drift method for numerical and for categorical columns, and the
        threshold of both (``None``: the method's own default). With ``None`` methods
        Evidently picks per column: on more than 1000 reference rows a distance (normed
        Wasserstein for numbers, Jensen-Shannon for categories and numbers with at most
        five values, threshold 0.1), on fewer a test (Kolmogorov-Smirnov, chi-square or
        a z-test, drift at p < 0.05). A fixed distance threshold on a few hundred rows
        mostly measures sampling noise, hence the tests on small samples.
    score_threshold
        Threshold of the served scores' drift (``None``: as ``drift_threshold``).
        Retraining is due when the scores drifted.
    max_fallback_rate_increase
        Retraining is due when the share of fallback answers rose by more than this
        (absolute, 0.05 = five percentage points).
    max_coverage_drop
        Retraining is due when catalogue coverage fell by more than this share of its
        reference value (0.2 = a fifth), measured on equally many requests per window.
    max_quarantine_rate_increase, min_quarantine_rate_ratio
        A quarantine reason raises a data-quality alert when its rate rose by more than
        the first (absolute) and by at least the second (ratio). Alerts are reported but
        do not by themselves make retraining due.
    min_rows
        A window with fewer rows than this is not assessed.
    max_unseen_share
        A categorical column whose categories unseen in the reference cover more than
        this share of the current rows is flagged and left out of the drift share
        (``0`` flags any unseen category).
    feature_sample_rows
        Entity-days sampled per window and feature view for the feature drift.
    window_days
        Length of the default reference and current windows.
    random_state
        Seed of every sample.
    """

    max_drift_share: float = 0.3
    num_method: str | None = None
    cat_method: str | None = None
    drift_threshold: float | None = None
    score_threshold: float | None = None
    max_fallback_rate_increase: float = 0.05
    max_coverage_drop: float = 0.2
    max_quarantine_rate_increase: float = 0.005
    min_quarantine_rate_ratio: float = 2.0
    min_rows: int = 50
    max_unseen_share: float = 0.0
    feature_sample_rows: int = 10_000
    window_days: int = 28
    random_state: int = 0

    def __post_init__(self) -> None:
        for name in (
            "max_drift_share",
            "max_fallback_rate_increase",
            "max_coverage_drop",
            "max_quarantine_rate_increase",
            "max_unseen_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"monitoring {name}={value!r} must lie in [0, 1].")
        for name in ("min_rows", "feature_sample_rows", "window_days"):
            if getattr(self, name) < 1:
                raise ConfigError(f"monitoring {name}={getattr(self, name)!r} must be >= 1.")

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def load_config(path: Path | str | None = None, **overrides: object) -> MonitoringConfig:
    """The configuration from ``path`` (or ``$SHELFWISE_MONITORING_CONFIG``), then overrides.

    Raises
    ------
    ConfigError
        When the file is missing, is not TOML, or names an unknown setting.
    """
    values: dict[str, object] = {}
    path = path or os.environ.get(CONFIG_ENV) or None
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read the monitoring configuration {path}: {exc}") from exc
        values.update(data.get("monitoring", data))
        logger.info("monitoring configuration read from %s", path)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(MonitoringConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown monitoring setting(s) {unknown}.\nHint: known settings are {sorted(known)}."
        )
    return MonitoringConfig(**values)  # type: ignore[arg-type]
