"""Ingest and materialize on the whole retail log, each next to its baseline.

* ingest (validate, normalise, classify, write Parquet) against reading the same CSVs with
  polars and doing nothing else; target at most 3x and at most 10 s;
* ``materialize`` of the user and item views into Redis, Feast's stock path and the
  project's writer of the same layout, against raw pipelined redis-py ``HSET`` writes of
  the same rows; target at least 0.3x the rows per second.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import redis

from benchmarks._support import interleave, print_table, private_redis, summarize, tmpdir
from feature_repo import schema as S
from feature_repo.config import Paths, Settings, load_settings
from feature_repo.features import build_features
from feature_repo.ingest import ingest, list_sources

logger = logging.getLogger(__name__)


def bench_ingest(raw_dir: Path, runs: int) -> dict[str, object]:
    sources = list_sources(raw_dir)

    def baseline() -> None:
        pl.concat([pl.read_csv(p, infer_schema=False) for p in sources])

    def candidate() -> None:
        target = tmpdir()
        try:
            ingest(raw_dir, Paths(target))
        finally:
            shutil.rmtree(target, ignore_errors=True)

    candidate()  # warm-up: imports, page cache
    base, cand = interleave(runs, baseline, candidate)
    b, c = summarize(base), summarize(cand)
    return {
        "baseline_s": b["median"],
        "ingest_s": c["median"],
        "ingest_p95_s": c["p95"],
        "ratio": c["median"] / b["median"],
    }


def bench_materialize(settings: Settings, runs: int) -> dict[str, object]:
    from feature_repo.store import apply, materialize

    views = [S.USER_VIEW, S.ITEM_VIEW]
    store = apply(settings)
    end = max(
        pl.scan_parquet(settings.paths.feature_table(v))
        .select(pl.col(S.EVENT_TIMESTAMP).max())
        .collect()
        .item()
        for v in views
    )
    # The rows materialize writes: the latest snapshot of every entity.
    latest = {
        v: pl.read_parquet(settings.paths.feature_table(v)).filter(pl.col(S.EVENT_TIMESTAMP) == end)
        for v in views
    }
    n_rows = sum(t.height for t in latest.values())
    host, port, db = settings.redis_host_port
    client = redis.Redis(host=host, port=port, db=db)

    def baseline() -> None:
        pipe = client.pipeline(transaction=False)
        for view, table in latest.items():
            key_col = table.columns[0]
            features = [
                c
                for c in table.columns
                if c not in (key_col, S.EVENT_TIMESTAMP, S.CREATED_TIMESTAMP)
            ]
            for i, row in enumerate(table.select(key_col, *features).iter_rows()):
                pipe.hset(
                    f"raw:{view}:{row[0]}",
                    mapping={f: str(v) for f, v in zip(features, row[1:], strict=True)},
                )
                if i % 1000 == 999:
                    pipe.execute()
        pipe.execute()

    def stock() -> None:
        materialize(settings, store=store, views=views, end=end + timedelta(seconds=1), stock=True)

    def fast() -> None:
        materialize(settings, store=store, views=views, end=end + timedelta(seconds=1))

    stock()
    fast()
    base, cand, quick = interleave(runs, baseline, stock, fast)
    b, c, f = summarize(base), summarize(cand), summarize(quick)
    return {
        "rows": n_rows,
        "raw_rows_per_s": n_rows / b["median"],
        "raw_s": b["median"],
        "feast_rows_per_s": n_rows / c["median"],
        "feast_s": c["median"],
        "ratio": b["median"] / c["median"],
        "fast_rows_per_s": n_rows / f["median"],
        "fast_s": f["median"],
        "fast_ratio": b["median"] / f["median"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks features", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    settings = load_settings()

    started = time.perf_counter()
    ing = bench_ingest(settings.raw_dir, args.runs)
    print_table(
        f"Ingest of the whole log (median of {args.runs} runs, interleaved)",
        ["what", "seconds", "ratio"],
        [
            ["polars read_csv of the same files", ing["baseline_s"], 1.0],
            ["shelfwise ingest", ing["ingest_s"], ing["ratio"]],
        ],
    )

    data = tmpdir()
    try:
        with private_redis() as url:
            bench_settings = Settings(
                raw_dir=settings.raw_dir, data_dir=data, redis_url=url, project="bench"
            )
            ingest(settings.raw_dir, bench_settings.paths)
            build_features(bench_settings.paths)
            mat = bench_materialize(bench_settings, args.runs)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    print_table(
        f"Materialize the latest user and item rows ({mat['rows']:,} entities) into Redis",
        ["what", "seconds", "rows/s", "ratio"],
        [
            ["raw pipelined HSET", mat["raw_s"], mat["raw_rows_per_s"], 1.0],
            ["feast materialize (stock)", mat["feast_s"], mat["feast_rows_per_s"], mat["ratio"]],
            [
                "shelfwise materialize (Feast layout)",
                mat["fast_s"],
                mat["fast_rows_per_s"],
                mat["fast_ratio"],
            ],
        ],
    )
    logger.info("features benchmarks took %.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
