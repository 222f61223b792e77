"""Open-loop load on ``POST /recommend`` at fixed rates, loopback only, bounded in time.

The service runs as a real ``bentoml serve`` subprocess on the project's trained model
(the BentoML home of ``make train``) and its feature tables, with the features
materialised into a private redis-server and the audit log written to a temporary folder,
so neither the user's Redis nor the real audit log sees benchmark traffic. Requests are
the test window's real customers and guest baskets, shuffled with a fixed seed.

Reported per rate: p50/p95/p99 latency (from each request's due time, so queueing counts),
errors, fallbacks, and each stage's median from the ``Server-Timing`` header. Targets on
2 cores: p95 <= 50 ms and p99 <= 100 ms at 50 req/s; no errors at 100 req/s.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import feature_repo  # noqa: F401  (telemetry off)

logger = logging.getLogger(__name__)

STAGE_ORDER = (
    "opt_out", "candidates", "rules", "features", "session_features", "rank", "diversity",
    "explain", "fallback", "audit", "total",
)  # fmt: skip


def _link_inputs(real: Any, data_dir: Path) -> None:
    """The real events, items and feature tables, linked (read-only) into ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for path in (real.paths.events, real.paths.items, real.paths.features):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} is missing.\nHint: run `make demo` first.")
        (data_dir / Path(path).name).symlink_to(Path(path).resolve())


def _print_results(results: list[Any], *, version: str) -> None:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"/recommend open-loop load, model {version} "
        f"({platform.python_version()}, {os.cpu_count()} cores, load average {load})"
    )
    print(f"{'rate/s':>7}{'sent':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
          "  fallbacks")  # fmt: skip
    for r in results:
        fallbacks = ", ".join(f"{k}={v}" for k, v in sorted(r.fallbacks.items())) or "-"
        print(
            f"{r.rate:>7.0f}{r.sent:>7}{r.percentile(50):>9.1f}{r.percentile(95):>9.1f}"
            f"{r.percentile(99):>9.1f}{r.errors:>8}  {fallbacks}"
        )
    print("\nstage medians (ms, server side)")
    stages = [s for s in STAGE_ORDER if any(s in r.stages_ms for r in results)]
    print(f"{'rate/s':>7}" + "".join(f"{s:>17}" for s in stages))
    for r in results:
        print(f"{r.rate:>7.0f}" + "".join(f"{r.stage_median(s):>17.2f}" for s in stages))
    at_50 = next((r for r in results if r.rate == 50), None)
    at_100 = next((r for r in results if r.rate == 100), None)
    if at_50 is not None:
        met = at_50.percentile(95) <= 50 and at_50.percentile(99) <= 100
        print(f"\ntarget at 50/s (p95 <= 50 ms, p99 <= 100 ms): {'met' if met else 'missed'}")
    if at_100 is not None:
        print(f"target at 100/s (no errors): {'met' if at_100.errors == 0 else 'missed'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks serving", description=__doc__)
    parser.add_argument("--rates", default="50,100", help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="sending time per rate")
    parser.add_argument("--warmup", type=int, default=150, help="requests before measuring")
    parser.add_argument("--model-version", help="default: the latest trained model")
    parser.add_argument("--workers", type=int, default=2, help="BentoML worker processes")
    args = parser.parse_args(argv)
    for noisy in ("feast", "feature_repo", "bentos.sandbox", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from bentos.__main__ import list_versions
    from bentos.loadgen import open_loop
    from bentos.process import ServiceProcess
    from bentos.sandbox import RedisProcess
    from bentos.workload import window_requests
    from feature_repo.config import load_settings
    from feature_repo.store import apply, materialize
    from models.api import resolve_bentoml_home

    real = load_settings()
    home = resolve_bentoml_home(None, real)
    os.environ.setdefault("BENTOML_HOME", str(home))
    versions = list_versions()
    if not versions:
        print(f"no trained model in {home}; run `make demo` (or `make train`) first")
        return 1
    version = args.model_version or versions[0]
    rates = [float(r) for r in args.rates.split(",") if r.strip()]

    # Requests: the test window's customers and guest baskets, in a seeded random order.
    bodies = window_requests(real, with_time=False)
    random.Random(0).shuffle(bodies)

    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        root = Path(tmp)
        redis_proc = RedisProcess(root / "redis").start()
        service: ServiceProcess | None = None
        try:
            settings = load_settings(
                data_dir=root / "data", redis_url=redis_proc.url, project="bench_serving"
            )
            _link_inputs(real, settings.data_dir)
            materialize(settings, store=apply(settings))
            service = ServiceProcess(
                env={
                    "SHELFWISE_DATA_DIR": str(settings.data_dir),
                    "SHELFWISE_REDIS_URL": settings.redis_url,
                    "SHELFWISE_FEAST_PROJECT": settings.project,
                    "BENTOML_HOME": str(home),
                    "SHELFWISE_MODEL_VERSION": version,
                    "SHELFWISE_SERVE_WORKERS": str(args.workers),
                },
                log_path=root / "service.log",
            ).start()
            url = f"{service.url}/recommend"

            # Warm up (first requests pay for lazy imports and caches), then each rate.
            open_loop(url, bodies[: args.warmup], rate=20.0, max_seconds=30.0)
            results = []
            offset = args.warmup
            for rate in rates:
                n = int(rate * args.seconds)
                chunk = [bodies[(offset + i) % len(bodies)] for i in range(n)]
                offset += n
                results.append(open_loop(url, chunk, rate=rate, max_seconds=args.seconds + 1))
                time.sleep(10)  # let a backlog drain before the next rate
        finally:
            if service is not None:
                service.stop()
            redis_proc.stop()
    _print_results(results, version=version)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
