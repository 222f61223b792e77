"""Self-contained HTML: the run's report page and the index of every report.

Nothing on a page is fetched: the plots are inline SVG drawn by matplotlib, and the
Evidently dashboards are drawn by Evidently's own JavaScript bundle and icon font, both
inlined once per page, with each dashboard's data in the page itself.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.drift import DriftResult
from monitoring.quality import QualityResult

if TYPE_CHECKING:
    from monitoring.report import RunResult

logger = logging.getLogger(__name__)

REFERENCE_COLOUR = "#4c72b0"
CURRENT_COLOUR = "#dd8452"
DRIFT_COLOUR = "#c44e52"
STABLE_COLOUR = "#55a868"

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
       color: #222; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 0 0 12px; }
h3 { font-size: 16px; margin: 18px 0 8px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 18px 22px;
          margin: 18px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
th, td { border-bottom: 1px solid #e3e6ea; padding: 4px 10px; text-align: left; }
th { background: #f0f2f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.banner { padding: 14px 18px; border-radius: 6px; font-size: 20px; font-weight: 600; }
.due { background: #fde2e1; color: #8a1c1c; border: 1px solid #f3a6a3; }
.ok { background: #e3f4e7; color: #1d5e2c; border: 1px solid #a6d8b2; }
.unknown { background: #fff4d6; color: #6b4e00; border: 1px solid #f0d589; }
.fired { color: #b3261e; font-weight: 600; } .na { color: #777; }
.note { background: #fff8e5; border-left: 4px solid #f0c24b; padding: 8px 12px; margin: 8px 0; }
.meta { color: #555; font-size: 13px; } .plot svg { max-width: 100%; height: auto; }
nav a { margin-right: 14px; font-size: 14px; }
"""


# ---------------------------------------------------------------------------------------
# Small helpers


class Markup(str):
    """Text that is already HTML: :func:`table` inserts it as it is."""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: object, kind: str = "num") -> str:
    """A figure for a table cell: ``n/a`` for missing, percentages, short floats."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "pct" and isinstance(value, int | float):
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, cls: str = "") -> str:
    """An HTML table. Numbers are formatted and right-aligned, :class:`Markup` cells are
    inserted as they are, and everything else is escaped."""
    out = [f'<table class="{esc(cls)}"><thead><tr>']
    out += [f"<th>{esc(h)}</th>" for h in headers]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for cell in row:
            if isinstance(cell, Markup):
                out.append(f"<td>{cell}</td>")
            elif isinstance(cell, int | float) and not isinstance(cell, bool):
                out.append(f'<td class="num">{esc(fmt(cell))}</td>')
            else:
                out.append(f"<td>{esc(cell if isinstance(cell, str) else fmt(cell))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def note(text: str) -> str:
    return f'<div class="note">{esc(text)}</div>'


# ---------------------------------------------------------------------------------------
# Plots: matplotlib to inline SVG


def _svg(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return '<div class="plot">' + text[text.find("<svg") :] + "</div>"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "font.size": 9})
    return plt


def severity(method: str, score: float, threshold: float) -> float:
    """How far past its threshold a column's drift is: 1 at the threshold, above it when
    drifted, for distances (score over threshold) and p-values (threshold over score)."""
    if not math.isfinite(score) or not threshold:
        return math.nan
    if "p_value" in method:
        return threshold / max(score, 1e-12)
    return score / threshold


def drift_scores_plot(result: DriftResult) -> str:
    """Horizontal bars of each assessed column's drift against its threshold."""
    if not result.columns:
        return ""
    plt = _pyplot()
    values = {c.column: severity(c.method, c.score, c.threshold) for c in result.columns}
    columns = sorted(result.columns, key=lambda c: values[c.column])
    height = max(2.0, 0.24 * len(columns) + 0.8)
    figure, axis = plt.subplots(figsize=(7.5, height))
    shown = [min(max(values[c.column], 1e-3), 1e3) for c in columns]
    colours = [DRIFT_COLOUR if c.drifted else STABLE_COLOUR for c in columns]
    axis.barh([c.column for c in columns], shown, color=colours)
    axis.set_xscale("log")
    axis.axvline(1.0, color="#333", linestyle="--", linewidth=1)
    axis.set_xlabel("distance / threshold, or threshold / p-value (drift at >= 1)")
    axis.set_title(f"{result.name}: drift per column (red: drifted)")
    return _svg(figure)


def histogram_plot(
    reference: Sequence[float], current: Sequence[float], *, title: str, xlabel: str
) -> str:
    """Two overlaid density histograms on shared bins."""
    ref = [v for v in reference if v is not None and math.isfinite(v)]
    cur = [v for v in current if v is not None and math.isfinite(v)]
    if not ref and not cur:
        return ""
    import numpy as np

    plt = _pyplot()
    values = np.asarray(ref + cur, dtype=float)
    low, high = np.quantile(values, [0.005, 0.995]) if values.size else (0.0, 1.0)
    if high <= low:
        low, high = float(values.min()) - 0.5, float(values.max()) + 0.5
    bins = np.linspace(low, high, 41)
    figure, axis = plt.subplots(figsize=(7.5, 2.8))
    if ref:
        axis.hist(
            np.clip(ref, low, high),
            bins=bins,
            density=True,
            alpha=0.55,
            color=REFERENCE_COLOUR,
            label=f"reference (n={len(ref):,})",
        )
    if cur:
        axis.hist(
            np.clip(cur, low, high),
            bins=bins,
            density=True,
            alpha=0.55,
            color=CURRENT_COLOUR,
            label=f"current (n={len(cur):,})",
        )
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.legend()
    return _svg(figure)


def paired_bars_plot(
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    title: str,
    ylabel: str,
    percent: bool = True,
) -> str:
    """Reference and current side by side for each label."""
    if not labels:
        return ""
    import numpy as np

    plt = _pyplot()
    x = np.arange(len(labels))
    figure, axis = plt.subplots(figsize=(max(5.0, 0.7 * len(labels) + 2), 3.0))
    scale = 100.0 if percent else 1.0
    axis.bar(
        x - 0.2, [v * scale for v in reference], 0.4, color=REFERENCE_COLOUR, label="reference"
    )
    axis.bar(x + 0.2, [v * scale for v in current], 0.4, color=CURRENT_COLOUR, label="current")
    axis.set_xticks(x, labels, rotation=30, ha="right")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend()
    return _svg(figure)


# ---------------------------------------------------------------------------------------
# Evidently's dashboards, drawn in the page by its own inlined bundle

_DATA_BLOCK = re.compile(
    r"<script>\s*var (?P<id>metric_[0-9a-f]+) = (?P<info>.*?);\s*"
    r"var additional_graphs_(?P=id) = (?P<graphs>.*?);\s*</script>",
    re.S,
)


@functools.cache
def _evidently_assets() -> tuple[str, str]:
    """Evidently's JavaScript bundle and its icon font (base64), from the installed package."""
    from evidently.legacy.utils.dashboard import STATIC_PATH

    static = Path(STATIC_PATH)
    script = (static / "index.js").read_text(encoding="utf-8")
    font = base64.b64encode((static / "material-ui-icons.woff2").read_bytes()).decode()
    return script, font


def evidently_fragment(snapshot: Any, dom_id: str) -> tuple[str, str]:
    """``(markup, draw call)`` that show ``snapshot``'s dashboard in element ``dom_id``.

    The dashboard data comes from the snapshot's own standalone HTML, so every widget the
    report holds is shown as Evidently renders it.
    """
    page = snapshot.get_html_str(as_iframe=False)
    match = _DATA_BLOCK.search(page)
    if match is None:
        raise RuntimeError(
            "cannot find the dashboard data in Evidently's HTML; the installed Evidently "
            "renders pages differently from the pinned version (see constraints.txt)."
        )
    info, graphs = match.group("info"), match.group("graphs")
    var = re.sub(r"[^A-Za-z0-9_]", "_", dom_id)
    # Keep "</script>" inside the data from closing the element.
    info = info.replace("</", "<\\/")
    graphs = graphs.replace("</", "<\\/")
    markup = (
        f'<div class="evidently" id="{dom_id}"></div>\n'
        f"<script>var data_{var} = {info};\nvar graphs_{var} = {graphs};</script>"
    )
    draw = f'window.drawDashboard(data_{var}, new Map(Object.entries(graphs_{var})), "{dom_id}");'
    return markup, draw


def evidently_head() -> str:
    _, font = _evidently_assets()
    return (
        "<style>@font-face { font-family: 'Material Icons'; font-style: normal; "
        f"font-weight: 400; src: url(data:font/woff2;base64,{font}) format('woff2'); }}\n"
        ".material-icons { font-family: 'Material Icons'; font-weight: normal; "
        "font-style: normal; font-size: 24px; line-height: 1; display: inline-block; "
        "white-space: nowrap; direction: ltr; -webkit-font-smoothing: antialiased; }</style>"
    )


def evidently_scripts(draws: Sequence[str]) -> str:
    """The bundle once, then every dashboard's draw call (each guarded, so one failing
    dashboard leaves the others and the rest of the page intact)."""
    if not draws:
        return ""
    script, _ = _evidently_assets()
    calls = "\n".join(
        f"try {{ {d} }} catch (e) {{ console.error('evidently dashboard', e); }}" for d in draws
    )
    return (
        "<script>var global = globalThis;</script>\n"
        f"<script>{script}</script>\n<script>{calls}</script>"
    )


# ---------------------------------------------------------------------------------------
# The report page


def _drift_section(result: DriftResult | None, what: str) -> str:
    if result is None:
        return note(f"{what}: not computed.")
    parts = []
    if result.note:
        parts.append(note(f"{what}: {result.note}"))
    parts.append(
        "<p>"
        + "".join(
            f"{part}: {ref:,} reference and {cur:,} current rows; "
            for part, (ref, cur) in result.row_counts.items()
        )
        + f"{len(result.columns)} column(s) assessed, {result.n_drifted} drifted"
        + (f" (share {result.drift_share:.0%})" if result.drift_share is not None else "")
        + f", {len(result.flagged_columns())} flagged.</p>"
    )
    stats = {s.column: s for s in result.stats}
    if result.columns:
        parts.append(drift_scores_plot(result))
        rows = []
        for c in sorted(result.columns, key=lambda c: (not c.drifted, c.column)):
            s = stats.get(c.column)
            verdict = Markup('<span class="fired">drifted</span>') if c.drifted else "stable"
            rows.append(
                [
                    c.column,
                    c.kind,
                    c.method,
                    c.score,
                    c.threshold,
                    verdict,
                    fmt(s.null_share_reference, "pct") if s else "n/a",
                    fmt(s.null_share_current, "pct") if s else "n/a",
                    s.mean_reference if s else None,
                    s.mean_current if s else None,
                ]
            )
        parts.append(
            table(
                [
                    "column",
                    "kind",
                    "method",
                    "score",
                    "threshold",
                    "verdict",
                    "null (ref)",
                    "null (cur)",
                    "mean (ref)",
                    "mean (cur)",
                ],
                rows,
            )
        )
    if result.flags:
        parts.append("<h3>Flagged columns, left out of the drift share</h3>")
        parts.append(
            table(
                ["column", "reason", "detail"],
                [[f.column, f.reason, f.detail] for f in result.flags],
                cls="flags",
            )
        )
    return "\n".join(parts)


def _decision_section(run: RunResult) -> str:
    decision = run.decision
    cls = "due" if decision.retrain else ("ok" if decision.assessed else "unknown")
    rows = []
    for c in decision.checks:
        status = (
            Markup('<span class="fired">fired</span>')
            if c.fired
            else ("ok" if c.assessed else Markup('<span class="na">not assessed</span>'))
        )
        rows.append([c.name, c.value, c.threshold, status, c.detail])
    parts = [
        f'<div class="banner {cls}" id="verdict">{esc(decision.verdict.capitalize())}</div>',
        table(["check", "value", "threshold", "status", "detail"], rows),
    ]
    if decision.reasons:
        parts.append("<p><b>Why:</b> " + esc("; ".join(decision.reasons)) + "</p>")
    for alert in decision.alerts:
        parts.append(note(f"Data-quality alert (not a retraining trigger): {alert}"))
    return "\n".join(parts)


def _output_section(run: RunResult) -> str:
    ref, cur = run.output_reference, run.output_current
    parts = []
    for text in run.audit_notes:
        parts.append(note(text))
    if ref is None or cur is None or (ref.n_requests == 0 and cur.n_requests == 0):
        parts.append(
            note("No audit records in either window: score and output drift were not assessed.")
        )
        return "\n".join(parts)
    rows: list[list[object]] = [
        ["requests", ref.n_requests, cur.n_requests],
        ["items served", ref.n_impressions, cur.n_impressions],
        ["fallback answers", fmt(ref.fallback_rate, "pct"), fmt(cur.fallback_rate, "pct")],
        ["guest requests", fmt(ref.guest_share, "pct"), fmt(cur.guest_share, "pct")],
        ["catalogue coverage (equal samples)", fmt(ref.coverage, "pct"), fmt(cur.coverage, "pct")],
        [
            "requests per coverage sample",
            ref.coverage_sample_requests,
            cur.coverage_sample_requests,
        ],
        ["popularity concentration (Gini)", ref.gini, cur.gini],
        [
            "share of the 10 most served items",
            fmt(ref.top10_share, "pct"),
            fmt(cur.top10_share, "pct"),
        ],
        ["latency p50 (ms)", ref.latency_p50_ms, cur.latency_p50_ms],
        ["latency p95 (ms)", ref.latency_p95_ms, cur.latency_p95_ms],
        [
            "model versions",
            ", ".join(ref.model_versions) or "n/a",
            ", ".join(cur.model_versions) or "n/a",
        ],
    ]
    parts.append(table(["figure", "reference", "current"], rows, cls="figures"))
    if run.score_values is not None:
        parts.append(
            histogram_plot(
                run.score_values[0],
                run.score_values[1],
                title="Scores of personalised answers",
                xlabel="score",
            )
        )
    sources = sorted(set(ref.source_share) | set(cur.source_share))
    if sources:
        parts.append("<h3>Mix of candidate sources</h3>")
        parts.append(
            paired_bars_plot(
                sources,
                [ref.source_share.get(s, 0.0) for s in sources],
                [cur.source_share.get(s, 0.0) for s in sources],
                title="Share of served items each retriever proposed",
                ylabel="% of items",
            )
        )
        parts.append(
            table(
                ["source", "reference", "current"],
                [
                    [
                        s,
                        fmt(ref.source_share.get(s, 0.0), "pct"),
                        fmt(cur.source_share.get(s, 0.0), "pct"),
                    ]
                    for s in sources
                ],
            )
        )
    reasons = sorted(set(ref.fallback_by_reason) | set(cur.fallback_by_reason))
    if reasons:
        parts.append("<h3>Fallback answers by reason</h3>")
        parts.append(
            table(
                ["reason", "reference", "current"],
                [
                    [
                        r,
                        fmt(ref.fallback_by_reason.get(r, 0.0), "pct"),
                        fmt(cur.fallback_by_reason.get(r, 0.0), "pct"),
                    ]
                    for r in reasons
                ],
            )
        )
    parts.append("<h3>Drift of the served scores</h3>")
    parts.append(_drift_section(run.scores, "served scores"))
    parts.append("<h3>Drift of the requests</h3>")
    parts.append(_drift_section(run.requests, "requests"))
    return "\n".join(parts)


def _quality_section(quality: QualityResult | None) -> str:
    if quality is None:
        return note("Data quality: not computed.")
    parts = []
    if quality.note:
        parts.append(note(f"Data quality: {quality.note}"))
    ingest = quality.ingest
    if ingest:
        parts.append(
            table(
                ["latest ingest", "value"],
                [
                    ["rows read", ingest.get("rows_read")],
                    ["rows loaded", ingest.get("rows_loaded")],
                    ["rows set aside", ingest.get("rows_set_aside")],
                    [
                        "files (new / already ingested)",
                        f"{ingest.get('files_new')} / {ingest.get('files_skipped')}",
                    ],
                    ["first event", ingest.get("first_event")],
                    ["last event", ingest.get("last_event")],
                    ["read = loaded + set aside", ingest.get("balanced")],
                ],
            )
        )
    parts.append(
        f"<p>Rows read: {quality.rows_reference:,} in the reference window, "
        f"{quality.rows_current:,} in the current one; quarantine rate "
        f"{fmt(quality.rate('reference'), 'pct')} then {fmt(quality.rate('current'), 'pct')}."
        + (
            f" {quality.undated_rows:,} quarantined row(s) carry no readable date."
            if quality.undated_rows
            else ""
        )
        + "</p>"
    )
    shown = [r for r in quality.reasons if r.count_reference or r.count_current]
    if shown:
        parts.append(
            paired_bars_plot(
                [r.reason for r in shown],
                [r.rate_reference for r in shown],
                [r.rate_current for r in shown],
                title="Quarantine rate by reason",
                ylabel="% of rows read",
            )
        )
        parts.append(
            table(
                ["reason", "rows (ref)", "rows (cur)", "rate (ref)", "rate (cur)", "alert"],
                [
                    [
                        r.reason,
                        r.count_reference,
                        r.count_current,
                        fmt(r.rate_reference, "pct"),
                        fmt(r.rate_current, "pct"),
                        Markup('<span class="fired">alert</span>') if r.alert else "",
                    ]
                    for r in shown
                ],
            )
        )
    return "\n".join(parts)


def render_report(run: RunResult) -> str:
    """The whole report page of one run, self-contained."""
    fragments = []
    draws = []
    for key, title, result in (
        ("features", "Evidently: feature drift and summary", run.features),
        ("scores", "Evidently: served scores", run.scores),
        ("requests", "Evidently: requests", run.requests),
    ):
        if result is None:
            continue
        for part, snapshot in result.snapshots.items():
            dom_id = f"evidently-{key}-{re.sub(r'[^a-z0-9]+', '-', part.lower())}"
            markup, draw = evidently_fragment(snapshot, dom_id)
            fragments.append(
                f'<section id="{dom_id}-section"><h2>{esc(title)}: {esc(part)}</h2>'
                f"{markup}</section>"
            )
            draws.append(draw)

    windows = [
        ["reference", run.reference.label()],
        ["current", run.current.label()],
        ["audit reference", run.audit_reference.label() if run.audit_reference else "n/a"],
        ["audit current", run.audit_current.label() if run.audit_current else "n/a"],
    ]
    body = f"""
<main>
<h1>Drift report: {esc(run.name)}</h1>
<p class="meta">Written {esc(run.created.strftime("%Y-%m-%d %H:%M:%S UTC"))} from
{esc(run.data_dir)}. <a href="../index.html">All reports</a></p>
<nav><a href="#decision">Decision</a><a href="#features">Features</a>
<a href="#output">Scores and mix</a><a href="#quality">Data quality</a>
<a href="#evidently">Evidently</a></nav>
<section id="decision"><h2>Retraining decision</h2>
{table(["window", "days"], windows)}
{_decision_section(run)}</section>
<section id="features"><h2>Feature drift ({esc(run.feature_service)})</h2>
{_drift_section(run.features, "features")}</section>
<section id="output"><h2>Scores and recommendation mix</h2>
{_output_section(run)}</section>
<section id="quality"><h2>Data quality of the ingest</h2>
{_quality_section(run.quality)}</section>
<div id="evidently">{"".join(fragments) or note("No Evidently dashboard: nothing assessed.")}</div>
<section id="configuration"><h2>Configuration</h2>
<pre>{esc(json.dumps(run.config.to_json(), indent=1))}</pre></section>
</main>"""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Drift report: {esc(run.name)}</title>
<style>{CSS}</style>
{evidently_head() if draws else ""}
</head><body>{body}
{evidently_scripts(draws)}
</body></html>
"""


# ---------------------------------------------------------------------------------------
# The index page


def render_index(summaries: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Every report, newest first: ``summaries`` holds ``(folder name, summary)`` pairs."""
    ordered = sorted(summaries, key=lambda s: str(s[1].get("created", "")), reverse=True)
    rows = []
    for folder, summary in ordered:
        decision = summary.get("decision", {})
        verdict = str(decision.get("verdict", "n/a"))
        cls = "fired" if decision.get("retrain") else ""
        windows = summary.get("windows", {})
        figures = summary.get("figures", {})
        rows.append(
            [
                str(summary.get("created", ""))[:19].replace("T", " "),
                Markup(
                    f'<a href="{esc(folder)}/report.html">{esc(summary.get("name", folder))}</a>'
                ),
                str(windows.get("reference_label", "")),
                str(windows.get("current_label", "")),
                Markup(f'<span class="{cls}">{esc(verdict)}</span>'),
                fmt(figures.get("feature_drift_share"), "pct"),
                Markup(f'<a href="{esc(folder)}/summary.json">JSON</a>'),
            ]
        )
    listing = (
        table(
            [
                "written (UTC)",
                "report",
                "reference",
                "current",
                "decision",
                "drifted features",
                "summary",
            ],
            rows,
            cls="index",
        )
        if rows
        else note("No report yet: run `make drift`.")
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drift reports</title>
<style>{CSS}</style></head><body><main>
<h1>Drift reports</h1><p class="meta">{len(rows)} report(s), newest first.</p>
<section id="reports">{listing}</section></main></body></html>
"""
