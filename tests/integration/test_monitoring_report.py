"""End to end: generated ingest and audit log, the command line, the files it writes, and
the report opened in a real headless Chromium with every host name unresolvable."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from feature_repo import schema as S
from feature_repo.config import PROJECT_ROOT, Settings
from monitoring.__main__ import EXIT_DUE, EXIT_UNDECIDED, main
from monitoring.report import INDEX_FILE, list_summaries, resolve_audit_windows
from monitoring.windows import parse_window
from tests.monitoring_fixtures import chromium_binary, run_chromium, write_audit_log, write_ingested

WINDOWS = ["--reference", "2011-03-01", "2011-03-15", "--current", "2011-03-15", "2011-03-29"]
SECTIONS = ("decision", "features", "output", "quality", "evidently")


@dataclass(frozen=True)
class Runs:
    reports: Path
    shifted: Settings
    stable: Settings
    empty: Settings
    exit_codes: dict[str, int]


def _data(root: Path, *, score_shift: float, fallback_after: float, audit: bool) -> Settings:
    settings = Settings(data_dir=root, project="t_monitoring")
    write_ingested(
        settings,
        date(2011, 3, 1),
        28,
        rows_per_day=120,
        quarantine_rates={S.REASON_DUPLICATE: 0.01},
    )
    if audit:
        write_audit_log(
            settings.paths.audit_log,
            date(2011, 3, 1),
            14,
            requests_per_day=30,
            fallback_rate=0.05,
            seed=1,
        )
        write_audit_log(
            settings.paths.audit_log,
            date(2011, 3, 15),
            14,
            requests_per_day=30,
            fallback_rate=fallback_after,
            score_shift=score_shift,
            seed=2,
        )
    return settings


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Three runs into one reports folder: shifted scores, a stable log, no audit log."""
    root = tmp_path_factory.mktemp("monitoring")
    reports = root / "reports"
    shifted = _data(root / "shifted", score_shift=1.0, fallback_after=0.25, audit=True)
    stable = _data(root / "stable", score_shift=0.0, fallback_after=0.05, audit=True)
    empty = _data(root / "empty", score_shift=0.0, fallback_after=0.05, audit=False)
    codes = {}
    for name, settings, command in (
        ("shifted", shifted, "drift"),
        ("stable", stable, "check"),
        ("empty", empty, "check"),
    ):
        codes[name] = main(
            [
                command,
                "--data-dir",
                str(settings.data_dir),
                "--reports",
                str(reports),
                "--name",
                name,
                *WINDOWS,
            ]
        )
    return Runs(reports, shifted, stable, empty, codes)


def summary(runs: Runs, name: str) -> dict:
    return next(s for _, s in list_summaries(runs.reports) if s["name"] == name)


def test_drift_exits_zero_even_when_retraining_is_due(runs: Runs) -> None:
    assert runs.exit_codes["shifted"] == 0
    decision = summary(runs, "shifted")["decision"]
    assert decision["retrain"] is True
    fired = {c["name"] for c in decision["checks"] if c["fired"]}
    assert fired == {"score_drift", "fallback_rate_increase"}


def test_check_exits_by_the_decision(runs: Runs) -> None:
    assert runs.exit_codes["stable"] == 0
    assert summary(runs, "stable")["decision"]["verdict"] == "no retraining needed"
    assert runs.exit_codes["empty"] == EXIT_UNDECIDED
    # The newest report is the empty one; the shifted run read back says retraining is due.
    assert main(["check", "--latest", "--reports", str(runs.reports)]) == EXIT_UNDECIDED
    shifted_only = runs.reports.parent / "shifted-only"
    shifted_only.mkdir()
    (folder,) = [f for f, s in list_summaries(runs.reports) if s["name"] == "shifted"]
    (runs.reports / folder).rename(shifted_only / folder)
    try:
        assert main(["check", "--latest", "--reports", str(shifted_only)]) == EXIT_DUE
    finally:
        (shifted_only / folder).rename(runs.reports / folder)


def test_summary_holds_the_figures_behind_the_decision(runs: Runs) -> None:
    data = summary(runs, "shifted")
    figures = data["figures"]
    assert figures["score_drifted"] is True
    assert figures["fallback_rate_current"] > figures["fallback_rate_reference"] + 0.1
    assert data["windows"]["reference_label"] == "2011-03-01 .. 2011-03-14"
    # No feature store here: the feature section says so instead of failing.
    assert data["features"]["assessed"] is False
    assert "no Feast registry" in data["features"]["note"]
    assert data["data_quality"]["assessed"] is True
    assert data["scores"]["columns"][0]["column"] == "score"


def test_empty_audit_log_still_renders_and_says_why(runs: Runs) -> None:
    data = summary(runs, "empty")
    assert data["decision"]["assessed"] is False
    assert data["scores"]["assessed"] is False
    assert "too_few_rows" in {f["reason"] for f in data["scores"]["flags"]}
    assert any("holds 0 answer(s)" in n for n in data["windows"]["audit_notes"])
    (folder,) = [f for f, s in list_summaries(runs.reports) if s["name"] == "empty"]
    page = (runs.reports / folder / "report.html").read_text()
    assert "No Evidently dashboard" in page
    assert "Cannot decide: nothing assessed" in page


def test_index_lists_every_report_newest_first(runs: Runs) -> None:
    page = (runs.reports / INDEX_FILE).read_text()
    names = re.findall(r'/report.html">([a-z]+)</a>', page)
    assert names == ["empty", "stable", "shifted"]
    for folder, _ in list_summaries(runs.reports):
        assert (runs.reports / folder / "summary.json").exists()
        assert f'href="{folder}/report.html"' in page


def test_default_windows_fall_back_to_halves_of_the_audit_log(tmp_path: Path) -> None:
    write_audit_log(tmp_path, date(2011, 3, 15), 14, requests_per_day=5)
    reference = parse_window("2011-02-01", "2011-03-01")
    current = parse_window("2011-03-01", "2011-03-29")
    ref, cur, notes = resolve_audit_windows(
        tmp_path, reference, current, explicit=False, min_rows=50
    )
    assert (ref, cur) == (
        parse_window("2011-03-15", "2011-03-22"),
        parse_window("2011-03-22", "2011-03-29"),
    )
    assert "two halves" in notes[0]
    same = resolve_audit_windows(tmp_path, reference, current, explicit=True, min_rows=50)
    assert same == (reference, current, [])


def test_help_does_not_import_evidently_or_feast() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from monitoring.__main__ import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "print(sorted(m for m in ('evidently', 'feast') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.browser
@pytest.mark.skipif(
    chromium_binary() is None,
    reason="Debian's chromium is not installed (apt-get install chromium)",
)
def test_report_renders_in_headless_chromium_without_network(runs: Runs, tmp_path: Path) -> None:
    """Every section renders, Evidently's dashboards draw, and the page asks for nothing."""
    (folder,) = [f for f, s in list_summaries(runs.reports) if s["name"] == "shifted"]
    page = runs.reports / folder / "report.html"
    screenshot = tmp_path / "report.png"
    browser = run_chromium(page, tmp_path / "chromium", screenshot=screenshot)

    # The page's own sections, the decision and the plots.
    dom = browser.dom
    for section in SECTIONS:
        assert f'id="{section}"' in dom, section
    assert "Retraining due" in dom
    assert dom.count("<svg") >= 3

    # Evidently's dashboards were drawn by its inlined bundle: their roots hold elements.
    roots = re.findall(r'<div class="evidently" id="([^"]+)">(.{0,400})', dom, re.S)
    assert {r for r, _ in roots} == {"evidently-scores-scores", "evidently-requests-requests"}
    for root, content in roots:
        assert content.startswith("<div"), f"dashboard {root} is empty"
    assert "Uncaught" not in browser.console

    # No request left for the network, and the screenshot was taken.
    assert browser.page_requests == []
    assert browser.screenshot is not None
    assert browser.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert browser.screenshot.stat().st_size > 20_000
    print(f"screenshot: {browser.screenshot}")


@pytest.mark.browser
@pytest.mark.skipif(
    chromium_binary() is None,
    reason="Debian's chromium is not installed (apt-get install chromium)",
)
def test_the_network_check_catches_a_page_that_loads_from_a_cdn(tmp_path: Path) -> None:
    """The request log the browser test relies on does see a page's external script."""
    page = tmp_path / "cdn.html"
    page.write_text(
        '<html><head><script src="https://cdn.example.org/lib.js"></script>'
        "</head><body>hello</body></html>"
    )
    browser = run_chromium(page, tmp_path / "chromium")
    assert "hello" in browser.dom
    assert browser.page_requests == ["https://cdn.example.org/lib.js"]
