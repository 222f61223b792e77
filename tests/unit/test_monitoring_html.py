"""Pieces of the report page that need no Evidently run, and the telemetry switch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from feature_repo.config import PROJECT_ROOT
from monitoring.html import Markup, evidently_fragment, fmt, render_index, severity, table


def test_table_escapes_text_and_inserts_only_markup_as_is() -> None:
    html = table(
        ["a", "b"],
        [["<script>x</script>", 1234.5], [Markup('<span class="fired">y</span>'), None]],
    )
    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert '<span class="fired">y</span>' in html
    assert '<td class="num">1,234</td>' in html
    assert "<td>n/a</td>" in html


def test_figures_are_formatted_for_reading() -> None:
    assert fmt(None) == "n/a"
    assert fmt(float("nan")) == "n/a"
    assert fmt(0.1234, "pct") == "12.34%"
    assert fmt(True) == "yes"
    assert fmt(12345678.9) == "12,345,679"


def test_severity_puts_distances_and_p_values_on_one_scale() -> None:
    assert severity("Wasserstein distance (normed)", 0.2, 0.1) == pytest.approx(2.0)
    assert severity("K-S p_value", 0.01, 0.05) == pytest.approx(5.0)
    assert severity("K-S p_value", 0.5, 0.05) == pytest.approx(0.1)


def test_index_orders_reports_newest_first_and_links_them() -> None:
    summaries = [
        (
            "b",
            {
                "name": "older",
                "created": "2011-01-01T00:00:00+00:00",
                "decision": {"verdict": "no retraining needed"},
            },
        ),
        (
            "a",
            {
                "name": "newer",
                "created": "2011-02-01T00:00:00+00:00",
                "decision": {"verdict": "retraining due", "retrain": True},
            },
        ),
    ]
    page = render_index(summaries)
    assert page.index("newer") < page.index("older")
    assert 'href="a/report.html"' in page
    assert 'href="b/summary.json"' in page
    assert "No report yet" in render_index([])


def test_an_unexpected_evidently_page_is_a_clear_error() -> None:
    class Snapshot:
        def get_html_str(self, as_iframe: bool) -> str:
            return "<html>nothing here</html>"

    with pytest.raises(RuntimeError, match="cannot find the dashboard data"):
        evidently_fragment(Snapshot(), "x")


def test_importing_monitoring_switches_telemetry_off() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "FEAST_USAGE")}
    code = "import os, monitoring; print(os.environ['DO_NOT_TRACK'], os.environ['FEAST_USAGE'])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == ["1", "False"]
