"""Requests drawn from the test window of the log: customers and guest baskets.

Each session (invoice) of the test window becomes one ``/recommend`` body. A customer's
session asks for the customer; a guest's session sends the first half of its basket (the
rest is what a recommender could have suggested). ``as_of`` is the session's first event,
so a replay writes the audit log at the original times.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np

from feature_repo import schema as S
from feature_repo.config import Settings
from feature_repo.timesplit import RETAIL_SPLIT, TimeSplit

logger = logging.getLogger(__name__)


def window_requests(
    settings: Settings,
    *,
    split: TimeSplit = RETAIL_SPLIT,
    k: int = 10,
    max_requests: int | None = None,
    seed: int = 0,
    with_time: bool = True,
) -> list[dict[str, Any]]:
    """``/recommend`` bodies for the test window's sessions, in time order.

    Parameters
    ----------
    max_requests
        Keep an evenly spread random sample of this many (time order kept).
    with_time
        Add ``as_of`` (replay); benchmarks leave it out.
    """
    import polars as pl

    from feature_repo.ingest import scan_events

    start, end = split.window("test")
    frame = (
        scan_events(settings.paths)
        .filter(
            (pl.col(S.EVENT_TYPE) == S.PURCHASE)
            & (pl.col(S.EVENT_TIMESTAMP) >= start)
            & (pl.col(S.EVENT_TIMESTAMP) < end)
        )
        .group_by(S.SESSION_ID)
        .agg(
            pl.col(S.USER_ID).drop_nulls().first(),
            pl.col(S.COUNTRY).drop_nulls().first(),
            pl.col(S.EVENT_TIMESTAMP).min(),
            pl.col(S.ITEM_ID).cast(pl.String).unique(maintain_order=True),
        )
        .sort(S.EVENT_TIMESTAMP, S.SESSION_ID)
        .collect()
    )
    if frame.height == 0:
        raise FileNotFoundError(
            f"no purchases in the test window [{start:%Y-%m-%d}, {end:%Y-%m-%d}) under "
            f"{settings.paths.events}.\nHint: run `make ingest` (or `make demo`) first."
        )
    if max_requests is not None and frame.height > max_requests:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(frame.height, size=max_requests, replace=False))
        frame = frame[rows.tolist()]
    bodies: list[dict[str, Any]] = []
    for row in frame.iter_rows(named=True):
        body: dict[str, Any] = {"k": k}
        if row[S.USER_ID] is not None:
            body["user_id"] = str(row[S.USER_ID])
        else:
            items = row[S.ITEM_ID]
            body["session_items"] = items[: max(1, len(items) // 2)][:50]
        if row[S.COUNTRY]:
            body["country"] = row[S.COUNTRY]
        if with_time:
            when: datetime = row[S.EVENT_TIMESTAMP]
            body["as_of"] = when.isoformat()
        bodies.append(body)
    logger.info(
        "%d requests from the test window [%s, %s): %d customers, %d guest baskets",
        len(bodies),
        start.date(),
        end.date(),
        sum("user_id" in b for b in bodies),
        sum("user_id" not in b for b in bodies),
    )
    return bodies
