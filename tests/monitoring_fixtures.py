"""Generated inputs of the monitoring tests: feature-like windows with known drift, an
audit log written with the service's record keys, a small events and quarantine store,
and a headless Chromium run that records the page's network requests."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from feature_repo import schema as S
from feature_repo.config import Settings
from feature_repo.ingest import QUARANTINE_COLUMNS

CHROMIUM_PATH = "/usr/bin/chromium"


def chromium_binary() -> str | None:
    """Debian's chromium, or one on the PATH; None when absent."""
    if Path(CHROMIUM_PATH).exists():
        return CHROMIUM_PATH
    return shutil.which("chromium") or shutil.which("chromium-browser")


# ---------------------------------------------------------------------------------------
# Feature-like windows


def feature_windows(
    *, n_reference: int = 3000, n_current: int = 3000, shift: float = 0.0, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two windows of three numerical and one categorical column.

    ``shift`` moves ``spend`` and ``recency`` by that many standard deviations and moves
    ``country``'s mix toward its second value; ``units`` never changes.
    """
    rng = np.random.default_rng(seed)

    def window(n: int, delta: float) -> pl.DataFrame:
        p_second = min(0.8, 0.3 + delta / 2)
        return pl.DataFrame(
            {
                "spend": rng.normal(100.0 + 20.0 * delta, 20.0, n),
                "recency": rng.gamma(2.0, 10.0, n) + 14.1 * delta,
                "units": rng.poisson(12.0, n).astype(np.float64),
                "country": rng.choice(
                    ["UK", "France", "Germany"], n, p=[0.9 - p_second, p_second, 0.1]
                ),
            }
        )

    return window(n_reference, 0.0), window(n_current, shift)


NUMERICAL = ["spend", "recency", "units"]
CATEGORICAL = ["country"]


# ---------------------------------------------------------------------------------------
# Audit log


def audit_record(
    *,
    request_id: str,
    when: datetime,
    items: Sequence[str],
    scores: Sequence[float],
    sources: Sequence[Sequence[str]],
    fallback: str | None = None,
    user: str | None = "u",
    model_version: str = "ranker-1",
    latency_ms: float = 12.0,
) -> dict[str, object]:
    """One record with exactly the keys the service writes."""
    return {
        S.AUDIT_REQUEST_ID: request_id,
        S.AUDIT_TIMESTAMP: when.astimezone(UTC).isoformat(),
        S.AUDIT_ENDPOINT: "recommend",
        S.AUDIT_USER: user,
        S.AUDIT_IS_GUEST: user is None,
        S.AUDIT_MODEL_VERSION: model_version,
        S.AUDIT_K: len(items),
        S.AUDIT_ITEMS: list(items),
        S.AUDIT_SCORES: [round(float(s), 6) for s in scores],
        S.AUDIT_SOURCES: [list(s) for s in sources],
        S.AUDIT_FALLBACK: fallback,
        S.AUDIT_LATENCY_MS: latency_ms,
    }


def write_audit_log(
    audit_dir: Path,
    start: date,
    days: int,
    *,
    requests_per_day: int = 40,
    k: int = 10,
    n_items: int = 300,
    score_shift: float = 0.0,
    fallback_rate: float = 0.05,
    popular_share: float = 0.0,
    sources: Sequence[str] = ("als", "buy_again", "popularity"),
    model_version: str = "ranker-1",
    seed: int = 0,
) -> int:
    """Append generated answers for ``days`` days from ``start``; returns how many.

    ``score_shift`` moves every personalised score; a fallback answer lists the most
    popular items with the ``popularity`` source; ``popular_share`` of personalised
    answers also lists only the 20 most popular items, which narrows coverage.
    """
    rng = np.random.default_rng(seed)
    audit_dir.mkdir(parents=True, exist_ok=True)
    items = [f"I{i:05d}" for i in range(n_items)]
    n = 0
    for day in range(days):
        midnight = datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(days=day)
        path = audit_dir / f"{midnight:%Y-%m-%d}.jsonl"
        with path.open("a", encoding="utf-8") as handle:
            for r in range(requests_per_day):
                when = midnight + timedelta(seconds=int(rng.integers(0, 86_400)))
                guest = rng.random() < 0.2
                if rng.random() < fallback_rate:
                    served = items[:k]
                    scores = list(np.linspace(1.0, 0.5, k))
                    record_sources = [["popularity"]] * k
                    fallback: str | None = "store_unavailable"
                else:
                    pool = items[:20] if rng.random() < popular_share else items
                    served = list(rng.choice(pool, size=k, replace=False))
                    scores = sorted(rng.normal(0.0 + score_shift, 1.0, k), reverse=True)
                    record_sources = [
                        sorted(set(rng.choice(list(sources), size=int(rng.integers(1, 3)))))
                        for _ in range(k)
                    ]
                    fallback = None
                record = audit_record(
                    request_id=f"{midnight:%Y%m%d}-{r}",
                    when=when,
                    items=served,
                    scores=scores,
                    sources=record_sources,
                    fallback=fallback,
                    user=None if guest else f"h{int(rng.integers(0, 500))}",
                    model_version=model_version,
                    latency_ms=float(rng.gamma(4.0, 4.0)),
                )
                handle.write(json.dumps(record) + "\n")
                n += 1
    return n


# ---------------------------------------------------------------------------------------
# Events, quarantine and items, in the ingest's layout


def write_ingested(
    settings: Settings,
    start: date,
    days: int,
    *,
    rows_per_day: int = 200,
    quarantine_rates: dict[str, float] | None = None,
    change_after: date | None = None,
    changed_rates: dict[str, float] | None = None,
    n_items: int = 300,
    seed: int = 0,
) -> None:
    """Write generated events and quarantined rows, day-partitioned like the ingest.

    Each day quarantines ``rate * rows_per_day`` rows per reason; from ``change_after``
    on, ``changed_rates`` apply instead.
    """
    rng = np.random.default_rng(seed)
    paths = settings.paths
    items = [f"I{i:05d}" for i in range(n_items)]
    for offset in range(days):
        day = start + timedelta(days=offset)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        times = [
            midnight + timedelta(seconds=int(s)) for s in rng.integers(0, 86_400, rows_per_day)
        ]
        events = pl.DataFrame(
            {
                S.USER_ID: [f"{int(u)}" for u in rng.integers(10_000, 10_200, rows_per_day)],
                S.SESSION_ID: [
                    f"{day:%y%m%d}{int(s):03d}" for s in rng.integers(0, 40, rows_per_day)
                ],
                S.ITEM_ID: list(rng.choice(items, rows_per_day)),
                S.EVENT_TYPE: [S.PURCHASE] * rows_per_day,
                S.QUANTITY: rng.integers(1, 12, rows_per_day).astype(np.int32),
                S.PRICE: rng.gamma(2.0, 2.0, rows_per_day),
                S.COUNTRY: ["United Kingdom"] * rows_per_day,
                S.EVENT_TIMESTAMP: times,
                "description": ["THING"] * rows_per_day,
            },
            schema_overrides={S.EVENT_TIMESTAMP: pl.Datetime("us", "UTC")},
        )
        target = paths.events / f"{S.DAY}={day}"
        target.mkdir(parents=True, exist_ok=True)
        events.write_parquet(target / "part-0.parquet")

        rates = quarantine_rates or {}
        if change_after is not None and day >= change_after and changed_rates is not None:
            rates = changed_rates
        rows = []
        for reason, rate in rates.items():
            for i in range(round(rate * rows_per_day)):
                row: dict[str, object] = {c: None for c in QUARANTINE_COLUMNS}
                row.update({S.SOURCE_FILE: f"{day}.csv", S.SOURCE_LINE: i + 2, S.REASON: reason})
                rows.append(row)
        if rows:
            schema = {c: pl.String for c in QUARANTINE_COLUMNS} | {S.SOURCE_LINE: pl.Int64}
            quarantine = pl.DataFrame(rows, schema=schema, orient="row")
            target = paths.quarantine / f"{S.DAY}={day}"
            target.mkdir(parents=True, exist_ok=True)
            quarantine.write_parquet(target / "part-0.parquet")
    pl.DataFrame({S.ITEM_ID: items}).write_parquet(paths.items)


# ---------------------------------------------------------------------------------------
# Headless Chromium


@dataclass(frozen=True)
class BrowserRun:
    """What a headless Chromium run of one page left behind."""

    dom: str
    screenshot: Path | None
    page_requests: list[str]
    console: str


def page_requests(net_log: Path) -> list[str]:
    """URLs the page itself asked for over the network (not file:, data: or blob:).

    Chromium's own background requests carry the initiator ``not an origin``; a request
    made by a page opened from a file carries the ``file://`` isolation key.
    """
    if not net_log.exists():
        return []
    text = net_log.read_text(encoding="utf-8", errors="replace").rstrip().rstrip(",")
    if not text.endswith("}"):
        text += "]}"  # a log cut short when the browser exits
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = json.loads(text.rsplit("},", 1)[0] + "}]}")
    names = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    urls = []
    for event in data.get("events", []):
        if names.get(event.get("type")) != "URL_REQUEST_START_JOB":
            continue
        params = event.get("params", {})
        url = str(params.get("url", ""))
        if not url or url.split(":", 1)[0] in ("file", "data", "blob", "about", "chrome"):
            continue
        if params.get("initiator") == "not an origin":
            continue
        urls.append(url)
    return urls


def run_chromium(
    page: Path,
    workdir: Path,
    *,
    screenshot: Path | None = None,
    window_size: tuple[int, int] = (1280, 4000),
    timeout_s: float = 90.0,
) -> BrowserRun:
    """Open ``page`` in headless Chromium with every host name unresolvable.

    Dumps the DOM after scripts ran, records the network log, and takes a screenshot
    when asked (a second run of the browser, each with a fresh profile).
    """
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    workdir.mkdir(parents=True, exist_ok=True)

    def command(profile: str, *extra: str) -> list[str]:
        return [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-extensions",
            "--disable-default-apps",
            # Nothing may leave the machine: no host name resolves.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={workdir / profile}",
            f"--window-size={window_size[0]},{window_size[1]}",
            "--virtual-time-budget=20000",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            page.resolve().as_uri(),
        ]

    net_log = workdir / "net-log.json"
    dump = subprocess.run(
        command("profile-dom", f"--log-net-log={net_log}", "--dump-dom"),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    shot = None
    if screenshot is not None:
        subprocess.run(
            command("profile-shot", f"--screenshot={screenshot}"),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        shot = screenshot if screenshot.exists() else None
    return BrowserRun(dump.stdout, shot, page_requests(net_log), dump.stderr)
