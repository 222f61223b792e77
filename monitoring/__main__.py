"""Command line of the drift monitoring: ``python -m monitoring COMMAND``.

Commands
--------
drift     compare a reference window with a current one, write the report and the JSON
          summary, print the retraining decision; exits 0 whatever the decision. Without
          windows it also writes the two example reports when the log covers them
          (``--no-examples`` skips them)
check     the same run, but exits 1 when retraining is due, 3 when nothing could be
          assessed, 0 otherwise (``--latest`` reads the newest summary instead)
examples  write the two example reports: the Christmas season against the spring
          months, and two neighbouring spring weeks
index     rewrite the index page of the reports folder

Days are ``YYYY-MM-DD``; a window's end day is exclusive.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from feature_repo.config import Settings, load_settings
from feature_repo.errors import ShelfwiseError
from feature_repo.logs import setup_logging
from monitoring.windows import Window, parse_day, parse_window

logger = logging.getLogger(__name__)

EXIT_DUE = 1
EXIT_UNDECIDED = 3

# The README's examples on the retail log.
EXAMPLES: dict[str, tuple[str, str, str, str]] = {
    # Spring (March to May 2011) as reference, the Christmas trade (November to the end
    # of the log) as current.
    "christmas-vs-spring": ("2011-03-01", "2011-06-01", "2011-11-01", "2011-12-10"),
    # Two neighbouring weeks of April 2011, Monday to Sunday.
    "spring-weeks": ("2011-04-04", "2011-04-11", "2011-04-11", "2011-04-18"),
}


def _quiet_library_warnings() -> None:
    """Hide the deprecation and empty-division warnings Evidently and Feast's libraries
    print on every run; the report itself says what matters. Feast resets the warning
    filters when it is imported, so it is imported first."""
    import warnings

    import feast  # noqa: F401

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"evidently\..*")


def _window(values: list[str] | None) -> Window | None:
    return parse_window(*values) if values else None


def _progress(total: int) -> object:
    counter = {"n": 0, "t": time.perf_counter()}

    def step(name: str) -> None:
        counter["n"] += 1
        print(f"[{counter['n']}/{total}] {name} ...", file=sys.stderr, flush=True)

    return step


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(data_dir=Path(args.data_dir) if args.data_dir else None)


def _run(
    args: argparse.Namespace,
    *,
    name: str | None = None,
    reference: Window | None = None,
    current: Window | None = None,
) -> object:
    from monitoring.config import load_config
    from monitoring.report import run_report

    settings = _settings(args)
    config = load_config(args.config)
    _quiet_library_warnings()
    return run_report(
        settings,
        reference=reference or _window(args.reference),
        current=current or _window(args.current),
        audit_reference=_window(getattr(args, "audit_reference", None)),
        audit_current=_window(getattr(args, "audit_current", None)),
        name=name or args.name,
        config=config,
        reports_dir=Path(args.reports) if args.reports else None,
        progress=_progress(4),  # type: ignore[arg-type]
    )


def _print_run(run: object) -> None:
    from monitoring.report import RunResult

    assert isinstance(run, RunResult)
    print(f"\nDrift report {run.name!r}")
    print(f"  reference window  {run.reference.label()}")
    print(f"  current window    {run.current.label()}")
    if run.audit_reference and run.audit_current:
        print(f"  audit windows     {run.audit_reference.label()}  vs  {run.audit_current.label()}")
    for text in run.audit_notes:
        print(f"  note: {text}")
    for result in (run.features, run.scores, run.requests):
        if result is None:
            continue
        flagged = result.flagged_columns()
        if not result.assessed and result.note:
            print(f"  {result.name}: not assessed: {result.note}")
        elif flagged:
            print(
                f"  {result.name}: flagged and left out of the drift share: "
                + ", ".join(f"{f.column} ({f.reason})" for f in result.flags)
            )
        elif result.note:
            print(f"  {result.name}: {result.note}")
    print(run.decision.text())
    print(f"  report   {run.html_path}")
    print(f"  summary  {run.json_path}")


def _examples_in_log(args: argparse.Namespace) -> list[tuple[str, Window, Window]]:
    """The examples whose windows lie inside the ingested log."""
    from monitoring.windows import log_span

    span = log_span(_settings(args).paths)
    found = []
    for name, (ref_start, ref_end, cur_start, cur_end) in EXAMPLES.items():
        reference = Window(parse_day(ref_start), parse_day(ref_end))
        current = Window(parse_day(cur_start), parse_day(cur_end))
        if span.start <= reference.start and current.end <= span.end:
            found.append((name, reference, current))
    return found


def cmd_drift(args: argparse.Namespace) -> int:
    defaults = not (args.reference or args.current)
    examples = _examples_in_log(args) if defaults and not args.no_examples else []
    for name, reference, current in examples:
        print(
            f"\nexample {name!r}: {reference.label()} against {current.label()}",
            file=sys.stderr,
            flush=True,
        )
        example = _run(args, name=name, reference=reference, current=current)
        _print_run(example)
    run = _run(args)
    _print_run(run)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    if args.latest:
        from monitoring.report import latest_summary

        settings = _settings(args)
        folder, summary = latest_summary(
            Path(args.reports) if args.reports else settings.paths.reports
        )
        decision = summary["decision"]
        print(f"latest report {folder}: {decision['verdict']}")
        for check in decision["checks"]:
            print(f"  {'FIRED' if check['fired'] else '':>5} {check['name']:<24} {check['detail']}")
        retrain, assessed = bool(decision["retrain"]), bool(decision["assessed"])
    else:
        run = _run(args)
        _print_run(run)
        retrain, assessed = run.decision.retrain, run.decision.assessed  # type: ignore[attr-defined]
    if retrain:
        return EXIT_DUE
    return 0 if assessed else EXIT_UNDECIDED


def cmd_examples(args: argparse.Namespace) -> int:
    for name, (ref_start, ref_end, cur_start, cur_end) in EXAMPLES.items():
        run = _run(
            args,
            name=name,
            reference=Window(parse_day(ref_start), parse_day(ref_end)),
            current=Window(parse_day(cur_start), parse_day(cur_end)),
        )
        _print_run(run)
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from monitoring.report import write_index

    settings = _settings(args)
    path = write_index(Path(args.reports) if args.reports else settings.paths.reports)
    print(f"index written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser, *, windows: bool = True) -> None:
        sub.add_argument("--data-dir", help="data folder (default: $SHELFWISE_DATA_DIR)")
        sub.add_argument("--reports", help="reports folder (default: DATA_DIR/reports)")
        if not windows:
            return
        sub.add_argument(
            "--config",
            help="TOML file with a [monitoring] table of thresholds "
            "(default: $SHELFWISE_MONITORING_CONFIG)",
        )
        sub.add_argument(
            "--reference",
            nargs=2,
            metavar=("START", "END"),
            help="reference window (default: the 4 weeks before training ends)",
        )
        sub.add_argument(
            "--current",
            nargs=2,
            metavar=("START", "END"),
            help="current window (default: the latest 4 weeks of the log)",
        )
        sub.add_argument(
            "--audit-reference",
            nargs=2,
            metavar=("START", "END"),
            help="reference window of the score and mix sections",
        )
        sub.add_argument(
            "--audit-current",
            nargs=2,
            metavar=("START", "END"),
            help="current window of the score and mix sections",
        )
        sub.add_argument("--name", default="drift", help="name of the report")

    drift = commands.add_parser("drift", help="write a drift report, print the decision")
    common(drift)
    drift.add_argument(
        "--no-examples", action="store_true", help="without windows, skip the two example reports"
    )
    check = commands.add_parser("check", help="exit 1 when retraining is due")
    common(check)
    check.add_argument(
        "--latest",
        action="store_true",
        help="read the newest summary instead of computing a new report",
    )
    examples = commands.add_parser("examples", help="write the two example reports")
    common(examples, windows=False)
    examples.add_argument("--config", help="TOML file with a [monitoring] table")
    common(commands.add_parser("index", help="rewrite the index page"), windows=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    handlers = {
        "drift": cmd_drift,
        "check": cmd_check,
        "examples": cmd_examples,
        "index": cmd_index,
    }
    try:
        return handlers[args.command](args)
    except ShelfwiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
