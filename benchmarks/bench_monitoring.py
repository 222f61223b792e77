"""Drift statistics of the real log's example windows: Evidently against polars alone.

For each example (the Christmas season against spring, two neighbouring spring weeks) the
ranker's features are read once from the offline store; then, interleaved and repeated,
Evidently's ``DataDriftPreset`` computes each feature's drift score, and polars computes
the same statistics (normed Wasserstein distance, Jensen-Shannon distance, null shares and
means). Both use the same methods for every column, so the scores must agree; the table
shows the largest difference. One full report per example (drift, summary and the HTML
page) is timed too.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from pathlib import Path

from feature_repo.config import load_settings

logger = logging.getLogger(__name__)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks monitoring", description=__doc__)
    parser.add_argument("--data-dir", help="data folder (default: $SHELFWISE_DATA_DIR)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-report", action="store_true", help="skip the full-report timing")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from monitoring.__main__ import EXAMPLES
    from monitoring.config import MonitoringConfig
    from monitoring.drift import MonitoringError, combine, run_drift
    from monitoring.features import feature_frames, open_store
    from monitoring.report import run_report
    from monitoring.stats import drift_table
    from monitoring.windows import parse_window

    settings = load_settings(data_dir=Path(args.data_dir) if args.data_dir else None)
    # Same methods on both sides, whatever the sample size.
    config = MonitoringConfig(num_method="wasserstein", cat_method="jensenshannon")
    try:
        store = open_store(settings)
    except MonitoringError as exc:
        print(f"skipped: {exc}")
        return 0

    rows = []
    for name, (ref_start, ref_end, cur_start, cur_end) in EXAMPLES.items():
        reference = parse_window(ref_start, ref_end)
        current = parse_window(cur_start, cur_end)
        started = time.perf_counter()
        views = feature_frames(settings, reference, current, config=config, store=store)
        read_s = time.perf_counter() - started

        def evidently_once(views: list = views) -> object:
            return combine(
                "features",
                [
                    run_drift(
                        v.view,
                        v.reference,
                        v.current,
                        numerical=v.numerical,
                        categorical=v.categorical,
                        config=config,
                    )
                    for v in views
                ],
            )

        def polars_once(views: list = views) -> dict[str, float]:
            scores: dict[str, float] = {}
            for v in views:
                table = drift_table(
                    v.reference,
                    v.current,
                    numerical=v.numerical,
                    categorical=v.categorical,
                    num_method="wasserstein",
                )
                scores.update(zip(table["column"], table["score"], strict=True))
            return scores

        # Warm up both (imports, first-call compilation), then interleave.
        result = evidently_once()
        scores = polars_once()
        times_ev, times_pl = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            polars_once()
            times_pl.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            evidently_once()
            times_ev.append(time.perf_counter() - t0)
        assessed = {c.column: c.score for c in result.columns}  # type: ignore[attr-defined]
        max_diff = max(abs(assessed[c] - scores[c]) for c in assessed) if assessed else float("nan")

        report_s = float("nan")
        if not args.no_report:
            t0 = time.perf_counter()
            run_report(
                settings,
                reference=reference,
                current=current,
                name=f"bench-{name}",
                store=store,
                write=True,
                reports_dir=settings.paths.reports.parent / "bench_reports",
            )
            report_s = time.perf_counter() - t0
        n_ref = sum(v.reference.height for v in views)
        n_cur = sum(v.current.height for v in views)
        rows.append(
            (
                name,
                f"{n_ref:,}/{n_cur:,}",
                len(assessed),
                read_s,
                statistics.median(times_pl),
                _percentile(times_pl, 0.95),
                statistics.median(times_ev),
                _percentile(times_ev, 0.95),
                statistics.median(times_ev) / statistics.median(times_pl),
                max_diff,
                report_s,
            )
        )

    header = (
        f"{'windows':<22}{'rows ref/cur':>16}{'cols':>6}{'feast s':>9}{'polars ms':>11}"
        f"{'p95':>8}{'evidently s':>13}{'p95':>8}{'ratio':>8}{'max |diff|':>12}"
        f"{'report s':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r[0]:<22}{r[1]:>16}{r[2]:>6}{r[3]:>9.1f}{r[4] * 1e3:>11.1f}{r[5] * 1e3:>8.1f}"
            f"{r[6]:>13.2f}{r[7]:>8.2f}{r[8]:>7.0f}x{r[9]:>12.1e}{r[10]:>10.1f}"
        )
    print(
        f"\n{args.repeats} interleaved repeats after one warm-up; medians and p95. "
        "'ratio' is Evidently's median over polars' median for the same statistics."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
