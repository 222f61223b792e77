"""Command line of the feature repo: ``python -m feature_repo COMMAND``.

Commands
--------
ingest       read the raw log into events + quarantine, print the ingest report
features     compute the feature tables from the events
apply        register the Feast definitions (like ``feast apply``)
materialize  load the latest feature values into the online store
show         print the online features of one customer and one item
env          print ``export`` lines for the variables ``feature_store.yaml`` names
demo         all of the above, in order, on the configured data
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from feature_repo import schema as S
from feature_repo.config import Settings, load_settings
from feature_repo.errors import ConfigError, ShelfwiseError
from feature_repo.logs import setup_logging

logger = logging.getLogger(__name__)


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from feature_repo.ingest import format_report, ingest

    raw = Path(args.raw) if args.raw else settings.raw_dir
    report = ingest(raw, settings.paths, progress=True)
    print(format_report(report))
    print(f"\nreport written to {settings.paths.ingest_report}")
    return 0


def cmd_features(settings: Settings, args: argparse.Namespace) -> int:
    from feature_repo.features import build_features

    tables = build_features(settings.paths)
    print(f"{'feature table':<20}{'rows':>12}{'entities':>10}  path")
    for name, table in tables.items():
        key = table.columns[0]
        print(
            f"{name:<20}{table.height:>12,}{table[key].n_unique():>10,}  "
            f"{settings.paths.feature_table(name)}"
        )
    return 0


def cmd_apply(settings: Settings, args: argparse.Namespace) -> int:
    from feature_repo.store import apply

    store = apply(settings)
    print(f"project {settings.project!r}, registry {settings.paths.registry}")
    for view in store.list_feature_views():
        print(f"  feature view {view.name:<18} {len(view.features):>3} features, ttl {view.ttl}")
    for service in store.list_feature_services():
        n = sum(len(p.features) for p in service.feature_view_projections)
        print(f"  feature service {service.name:<15} {n:>3} features")
    return 0


def cmd_materialize(settings: Settings, args: argparse.Namespace) -> int:
    from feature_repo.store import materialize

    materialize(settings, start=args.start, end=args.end)
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    import polars as pl

    from feature_repo.ingest import scan_events
    from feature_repo.store import ensure_online_tables, get_store

    # Accept ids as the raw log writes them (17850.0, lower-case codes).
    user_id = args.user.strip().removesuffix(".0") if args.user else None
    item_id = args.item.strip().upper() if args.item else None
    if not any(settings.paths.events.glob("*/*.parquet")) and (user_id is None or item_id is None):
        raise ConfigError(
            f"no events under {settings.paths.events} to pick a customer and an item from.\n"
            "Hint: run `python -m feature_repo ingest` first, or pass --user and --item."
        )
    if user_id is None or item_id is None:
        # The most active customer and the best-selling item of the last week of the log.
        purchases = scan_events(settings.paths).filter(pl.col(S.EVENT_TYPE) == S.PURCHASE)
        last = purchases.select(pl.col(S.EVENT_TIMESTAMP).max()).collect().item()
        recent = purchases.filter(pl.col(S.EVENT_TIMESTAMP) > last - pl.duration(days=7))
        if user_id is None:
            user_id = (
                recent.filter(pl.col(S.USER_ID).is_not_null())
                .group_by(S.USER_ID)
                .len()
                .sort(["len", S.USER_ID], descending=[True, False])
                .collect()[S.USER_ID][0]
            )
        if item_id is None:
            item_id = (
                recent.group_by(S.ITEM_ID)
                .len()
                .sort(["len", S.ITEM_ID], descending=[True, False])
                .collect()[S.ITEM_ID][0]
            )
    store = get_store(settings)
    ensure_online_tables(settings, store)
    service = store.get_feature_service(S.RANKER_SERVICE)
    values = store.get_online_features(
        features=service, entity_rows=[{S.USER_ID: user_id, S.ITEM_ID: item_id}]
    ).to_dict()
    print(f"Online features from {S.RANKER_SERVICE} for user_id={user_id} item_id={item_id}")
    for key, names in ((S.USER_ID, S.USER_FEATURES), (S.ITEM_ID, S.ITEM_FEATURES)):
        if all(values.get(name, [None])[0] is None for name in names):
            print(
                f"  note: no online features for {key}={values[key][0]} "
                "(unknown id, or not materialized yet)"
            )
    print(f"  {'feature':<30}{'value':>22}")
    for name in (*S.USER_FEATURES, *S.ITEM_FEATURES):
        if name in values:
            value = values[name][0]
            text = f"{value:,.3f}" if isinstance(value, float) else str(value)
            print(f"  {name:<30}{text:>22}")
    return 0


def cmd_env(settings: Settings, args: argparse.Namespace) -> int:
    from feature_repo.store import feast_env

    for key, value in feast_env(settings).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    for step in (cmd_ingest, cmd_features, cmd_apply, cmd_materialize, cmd_show):
        print(f"\n--- {step.__name__.removeprefix('cmd_')} ---", flush=True)
        step(settings, args)
    return 0


def _utc_time(text: str) -> datetime:
    """An ISO 8601 time; a naive one is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2011-12-09 or 2011-12-09T00:00:00+00:00"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feature_repo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--raw",
        help="raw log: folder of CSVs, one CSV or the UCI .xlsx (default $SHELFWISE_RAW_DIR)",
    )
    parser.add_argument("--data-dir", help="generated files (default $SHELFWISE_DATA_DIR)")
    parser.add_argument(
        "--start", type=_utc_time, help="materialize: start, ISO 8601 (no zone means UTC)"
    )
    parser.add_argument(
        "--end", type=_utc_time, help="materialize: end, ISO 8601 (no zone means UTC)"
    )
    parser.add_argument("--user", help="show: a user_id")
    parser.add_argument("--item", help="show: an item_id")
    parser.add_argument(
        "command", choices=["ingest", "features", "apply", "materialize", "show", "env", "demo"]
    )
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    settings = load_settings(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        raw_dir=Path(args.raw) if args.raw else None,
    )
    command = globals()[f"cmd_{args.command}"]
    try:
        return int(command(settings, args) or 0)
    except ShelfwiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
