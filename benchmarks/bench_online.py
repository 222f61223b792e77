"""Online features for 1 user + 200 items: Feast's stock read path, the service's fast
path (uncached and with item features cached in process) and a raw Redis pipeline.

Everything runs against a private redis-server and data folder built from the real log in a
temporary folder (ingest, feature tables, apply, materialize), so no user's Redis is touched.
Methods are interleaved trial by trial on the same random (user, 200 items) draws; each
trial's user and items are real entities of the materialised views.

Target: the fast path at most 3x the raw pipeline's median, and its p99 at most 10 ms.
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import feature_repo  # noqa: F401  (telemetry off)
from feature_repo import schema as S

logger = logging.getLogger(__name__)


def _entities(settings: Any) -> tuple[list[str], list[str]]:
    import polars as pl

    def ids(view: str, key: str) -> list[str]:
        table = pl.read_parquet(settings.paths.feature_table(view), columns=[key])
        return sorted(table[key].cast(pl.String).unique().to_list())

    return ids(S.USER_VIEW, S.USER_ID), ids(S.ITEM_VIEW, S.ITEM_ID)


def run(
    settings: Any,
    *,
    trials: int = 300,
    n_items: int = 200,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per-method latency percentiles (ms) over ``trials`` interleaved trials."""
    from bentos.online import FeastRedisReader, make_client, view_layouts
    from feature_repo.store import get_store

    store = get_store(settings, use_redis=True)
    service = store.get_feature_service(S.RANKER_SERVICE)
    layouts = view_layouts(store, S.RANKER_SERVICE)
    users, items = _entities(settings)
    rng = np.random.default_rng(seed)

    uncached = FeastRedisReader(
        make_client(settings.redis_url, budget_ms=1000), project=settings.project,
        layouts=layouts, item_view=S.ITEM_VIEW, item_cache_s=0,
    )  # fmt: skip
    cached = FeastRedisReader(
        make_client(settings.redis_url, budget_ms=1000), project=settings.project,
        layouts=layouts, item_view=S.ITEM_VIEW, item_cache_s=3600,
    )  # fmt: skip
    cached.warm_items(items)
    raw_client = make_client(settings.redis_url, budget_ms=1000)
    user_layout, item_layout = layouts[S.USER_VIEW], layouts[S.ITEM_VIEW]

    def feast_stock(user: str, batch: list[str]) -> object:
        rows = [{S.USER_ID: user, S.ITEM_ID: i} for i in batch]
        return store.get_online_features(features=service, entity_rows=rows).to_dict()

    def fast(reader: FeastRedisReader) -> Callable[[str, list[str]], object]:
        def call(user: str, batch: list[str]) -> object:
            return reader.read({S.USER_VIEW: [user], S.ITEM_VIEW: batch})

        return call

    # Keys are built outside the timed part: the baseline is the round trip alone.
    def raw_pipeline(user: str, batch: list[str]) -> object:
        keys = raw_keys[(user, tuple(batch))]
        with raw_client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys[0], user_layout.fields)  # type: ignore[arg-type]
            for key in keys[1:]:
                pipe.hmget(key, item_layout.fields)  # type: ignore[arg-type]
            return pipe.execute()

    methods: dict[str, Callable[[str, list[str]], object]] = {
        "raw Redis pipeline (baseline)": raw_pipeline,
        "Feast get_online_features": feast_stock,
        "fast path, no cache": fast(uncached),
        "fast path, item cache": fast(cached),
    }
    draws = [
        (str(rng.choice(users)), [str(i) for i in rng.choice(items, n_items, replace=False)])
        for _ in range(trials)
    ]
    raw_keys = {
        (u, tuple(b)): [
            uncached.redis_key(S.USER_ID, u),
            *(uncached.redis_key(S.ITEM_ID, i) for i in b),
        ]
        for u, b in draws
    }

    # Warm up every path (registry, protobuf, connections), then interleave.
    for fn in methods.values():
        for user, batch in draws[:10]:
            fn(user, batch)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for user, batch in draws:
        for name, fn in methods.items():
            started = time.perf_counter()
            fn(user, batch)
            times[name].append((time.perf_counter() - started) * 1000.0)

    base = float(np.median(times["raw Redis pipeline (baseline)"]))
    return {
        name: {
            "p50": float(np.median(t)),
            "p95": float(np.percentile(t, 95)),
            "p99": float(np.percentile(t, 99)),
            "ratio": float(np.median(t)) / base,
        }
        for name, t in times.items()
    }


def print_table(results: dict[str, dict[str, float]], *, trials: int, n_items: int) -> None:
    print(f"online features, 1 user + {n_items} items, {trials} interleaved trials "
          f"({platform.python_version()}, {platform.machine()})")  # fmt: skip
    print(f"{'method':<32}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'x raw p50':>11}")
    for name, r in results.items():
        print(f"{name:<32}{r['p50']:>9.2f}{r['p95']:>9.2f}{r['p99']:>9.2f}{r['ratio']:>11.2f}")
    fast = results["fast path, no cache"]
    print(
        f"target (fast path, no cache): <= 3x raw and p99 <= 10 ms -> "
        f"{'met' if fast['ratio'] <= 3 and fast['p99'] <= 10 else 'missed'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks online", description=__doc__)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--workdir", help="keep the sandbox here (default: a temp folder)")
    args = parser.parse_args(argv)
    for noisy in ("feast", "feature_repo", "bentos.sandbox"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from bentos.sandbox import RedisProcess, build_features
    from feature_repo.config import load_settings

    with tempfile.TemporaryDirectory(prefix="bench_online_") as tmp:
        root = Path(args.workdir or tmp)
        redis_proc = RedisProcess(root / "redis").start()
        try:
            settings = load_settings(
                data_dir=root / "data", redis_url=redis_proc.url, project="bench_online"
            )
            build_features(settings)
            results = run(settings, trials=args.trials, n_items=args.items)
        finally:
            redis_proc.stop()
    print_table(results, trials=args.trials, n_items=args.items)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
