"""The retraining decision from each check's figure and threshold."""

from __future__ import annotations

import pytest

from feature_repo.errors import ConfigError
from monitoring.audit import OutputFigures
from monitoring.config import MonitoringConfig, load_config
from monitoring.decision import decide
from monitoring.drift import ColumnDrift, DriftResult

CONFIG = MonitoringConfig(
    max_drift_share=0.3, max_fallback_rate_increase=0.05, max_coverage_drop=0.2
)


def features(n_drifted: int, n: int = 10) -> DriftResult:
    result = DriftResult("features", 100, 100)
    result.columns = [
        ColumnDrift(
            f"f{i}", "numerical", "wasserstein", 0.1, 0.5 if i < n_drifted else 0.01, i < n_drifted
        )
        for i in range(n)
    ]
    return result


def scores(drifted: bool) -> DriftResult:
    result = DriftResult("scores", 100, 100)
    result.columns = [
        ColumnDrift("score", "numerical", "wasserstein", 0.1, 0.4 if drifted else 0.02, drifted)
    ]
    return result


def figures(fallback: float, coverage: float) -> OutputFigures:
    return OutputFigures(
        n_requests=100, fallback_rate=fallback, coverage=coverage, coverage_sample_requests=100
    )


def checks(decision: object) -> dict[str, bool]:
    return {c.name: c.fired for c in decision.checks}  # type: ignore[attr-defined]


def test_nothing_moved_means_no_retraining() -> None:
    decision = decide(
        features=features(2),
        scores=scores(False),
        output_reference=figures(0.05, 0.5),
        output_current=figures(0.06, 0.45),
        quality=None,
        config=CONFIG,
    )
    assert not decision.retrain
    assert decision.assessed
    assert decision.verdict == "no retraining needed"
    assert not any(checks(decision).values())


@pytest.mark.parametrize(
    ("n_drifted", "fired"),
    [(2, False), (3, True), (10, True)],
)
def test_feature_drift_share_fires_at_the_threshold(n_drifted: int, fired: bool) -> None:
    decision = decide(
        features=features(n_drifted),
        scores=None,
        output_reference=None,
        output_current=None,
        quality=None,
        config=CONFIG,
    )
    assert checks(decision)["feature_drift_share"] is fired
    assert decision.retrain is fired


def test_each_online_check_fires_alone_and_names_its_figures() -> None:
    decision = decide(
        features=features(0),
        scores=scores(True),
        output_reference=figures(0.05, 0.5),
        output_current=figures(0.15, 0.3),
        quality=None,
        config=CONFIG,
    )
    assert checks(decision) == {
        "feature_drift_share": False,
        "score_drift": True,
        "fallback_rate_increase": True,
        "coverage_drop": True,
    }
    assert decision.retrain
    text = decision.text()
    assert "5.0% -> 15.0%" in text
    assert "+10.0 points" in text
    assert "50.0% -> 30.0%" in text
    assert "-40%" in text
    assert len(decision.reasons) == 3


def test_without_any_data_the_decision_says_it_cannot_decide() -> None:
    decision = decide(
        features=DriftResult("features", 0, 0, note="no registry"),
        scores=None,
        output_reference=OutputFigures(),
        output_current=OutputFigures(),
        quality=None,
        config=CONFIG,
    )
    assert not decision.retrain
    assert not decision.assessed
    assert decision.verdict == "cannot decide: nothing assessed"
    assert "not assessed: no registry" in decision.text()


def test_configuration_file_overrides_defaults_and_rejects_unknown_keys(tmp_path) -> None:
    path = tmp_path / "monitoring.toml"
    path.write_text("[monitoring]\nmax_drift_share = 0.5\nmin_rows = 10\n")
    config = load_config(path)
    assert config.max_drift_share == 0.5
    assert config.min_rows == 10
    path.write_text("[monitoring]\nmax_drift = 0.5\n")
    with pytest.raises(ConfigError, match="unknown monitoring setting"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"max_drift_share=1\.5 must lie in"):
        MonitoringConfig(max_drift_share=1.5)
