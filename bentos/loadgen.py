"""Open-loop HTTP load and replay against a running service (loopback only).

Open loop: request ``i`` is due at ``start + i / rate`` whatever happened to the earlier
ones, and its latency counts from that due time, so a slow server shows up as queueing
delay instead of quietly lowering the offered rate. Every run is bounded by a request
count and a wall-clock limit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np

logger = logging.getLogger(__name__)


def check_loopback(url: str) -> None:
    """Refuse any target that is not a loopback address."""
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"url={url!r}: load is only ever sent to a loopback address.")


@dataclass
class LoadResult:
    """What one open-loop run measured."""

    rate: float
    sent: int
    duration_s: float
    latencies_ms: np.ndarray
    statuses: dict[int, int]
    errors: int
    fallbacks: dict[str, int]
    stages_ms: dict[str, list[float]] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        if len(self.latencies_ms) == 0:
            return float("nan")
        return float(np.percentile(self.latencies_ms, q))

    def stage_median(self, stage: str) -> float:
        values = self.stages_ms.get(stage)
        return float(np.median(values)) if values else float("nan")


def parse_server_timing(header: str | None) -> dict[str, float]:
    """``"a;dur=1.5, b;dur=2"`` -> ``{"a": 1.5, "b": 2.0}``."""
    out: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            try:
                out[name] = float(rest[4:])
            except ValueError:
                continue
    return out


async def _open_loop(
    url: str,
    bodies: Sequence[dict[str, Any]],
    *,
    rate: float,
    max_seconds: float,
    timeout_s: float,
    max_in_flight: int,
) -> LoadResult:
    import httpx

    n = len(bodies)
    latencies = np.full(n, np.nan)
    statuses: dict[int, int] = {}
    fallbacks: dict[str, int] = {}
    stages: dict[str, list[float]] = {}
    errors = 0
    in_flight = 0
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:

        async def one(i: int, due: float) -> None:
            nonlocal errors, in_flight
            in_flight += 1
            try:
                response = await client.post(url, json=bodies[i])
                latencies[i] = (time.perf_counter() - due) * 1000.0
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code != 200:
                    errors += 1
                    return
                reason = response.json().get("fallback")
                if reason:
                    fallbacks[reason] = fallbacks.get(reason, 0) + 1
                for stage, ms in parse_server_timing(response.headers.get("server-timing")).items():
                    stages.setdefault(stage, []).append(ms)
            except (httpx.HTTPError, ValueError) as exc:
                errors += 1
                logger.debug("request %d failed: %s", i, exc)
            finally:
                in_flight -= 1

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        sent = 0
        for i in range(n):
            due = start + i / rate
            if due - start > max_seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= max_in_flight:
                # The server is this far behind: count the request as an error, not a wait.
                errors += 1
                sent += 1
                continue
            tasks.append(asyncio.create_task(one(i, due)))
            sent += 1
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s + 1.0)
            for task in pending:  # bounded in time: whatever is left counts as an error
                task.cancel()
            errors += len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
        duration = time.perf_counter() - start
    measured = latencies[:sent]
    return LoadResult(
        rate=rate,
        sent=sent,
        duration_s=duration,
        latencies_ms=measured[~np.isnan(measured)],
        statuses=statuses,
        errors=errors,
        fallbacks=fallbacks,
        stages_ms=stages,
    )


def open_loop(
    url: str,
    bodies: Sequence[dict[str, Any]],
    *,
    rate: float,
    max_seconds: float = 30.0,
    timeout_s: float = 5.0,
    max_in_flight: int = 256,
) -> LoadResult:
    """Send ``bodies`` to ``url`` (POST JSON) at ``rate`` requests per second.

    Stops after the last body or after ``max_seconds`` of sending, whichever comes first.
    """
    check_loopback(url)
    if rate <= 0:
        raise ValueError(f"rate={rate} must be positive.")
    return asyncio.run(
        _open_loop(
            url,
            bodies,
            rate=rate,
            max_seconds=max_seconds,
            timeout_s=timeout_s,
            max_in_flight=max_in_flight,
        )
    )


def wait_ready(
    base_url: str, *, timeout_s: float = 180.0, alive: Callable[[], bool] | None = None
) -> None:
    """Block until ``GET /readyz`` answers 200; ``alive`` reports whether the server lives."""
    import httpx

    check_loopback(base_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"the service at {base_url} exited during start-up")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"the service at {base_url} was not ready within {timeout_s:.0f} s")
