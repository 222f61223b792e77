"""Tiny generated event logs for the model tests: a few users, items, baskets and guests.

The generator plants structure the retrievers should find: every user has a favourite
item group (so baskets co-occur within groups), users buy some items repeatedly, a few
purchases are cancelled in full, and some baskets belong to guests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from feature_repo import schema as S

START = datetime(2011, 1, 3, tzinfo=UTC)
N_DAYS = 120
GROUP_WORDS = (
    ("red", "candle holder"),
    ("blue", "tea cup"),
    ("green", "garden sign"),
    ("pink", "baby blanket"),
)
COUNTRIES = ("United Kingdom", "France", "Germany")


def item_ids(n_items: int = 40) -> list[str]:
    return [f"I{i:03d}" for i in range(n_items)]


def item_group(item_id: str, n_groups: int = len(GROUP_WORDS)) -> int:
    return int(item_id[1:]) % n_groups


def titles(n_items: int = 40) -> dict[str, str]:
    """Item titles; items of one group share words, so title embeddings cluster."""
    out = {}
    for item in item_ids(n_items):
        colour, thing = GROUP_WORDS[item_group(item)]
        out[item] = f"{colour.upper()} {thing.upper()} NO {int(item[1:])}"
    return out


def make_events(
    *, n_users: int = 30, n_items: int = 40, n_baskets: int = 260, seed: int = 7
) -> pl.DataFrame:
    """A generated events table with the columns of ``scan_events`` (plus description)."""
    rng = np.random.default_rng(seed)
    items = item_ids(n_items)
    by_group = {g: [i for i in items if item_group(i) == g] for g in range(len(GROUP_WORDS))}
    names = titles(n_items)
    rows: list[dict[str, object]] = []
    for b in range(n_baskets):
        guest = rng.random() < 0.15
        user = None if guest else f"U{rng.integers(n_users):03d}"
        group = (
            int(rng.integers(len(GROUP_WORDS)))
            if user is None
            else int(user[1:]) % len(GROUP_WORDS)
        )
        size = int(rng.integers(2, 7))
        pool = by_group[group]
        chosen = list(rng.choice(pool, size=min(size, len(pool)), replace=False))
        if rng.random() < 0.3:
            chosen.append(str(rng.choice(items)))
        when = START + timedelta(days=float(rng.uniform(0, N_DAYS)))
        country = COUNTRIES[int(user[1:]) % len(COUNTRIES)] if user else COUNTRIES[0]
        session = f"{500000 + b}"
        for item in dict.fromkeys(chosen):
            rows.append(
                {
                    S.USER_ID: user,
                    S.SESSION_ID: session,
                    S.ITEM_ID: item,
                    S.EVENT_TYPE: S.PURCHASE,
                    S.QUANTITY: int(rng.integers(1, 13)),
                    S.PRICE: round(float(rng.uniform(0.5, 9.0)), 2),
                    S.COUNTRY: country,
                    S.EVENT_TIMESTAMP: when,
                    "description": names[item],
                }
            )
    frame = pl.DataFrame(rows).with_columns(
        pl.col(S.QUANTITY).cast(pl.Int32),
        pl.col(S.EVENT_TIMESTAMP).cast(pl.Datetime("us", "UTC")),
    )
    return frame.sort(S.EVENT_TIMESTAMP, S.SESSION_ID, S.ITEM_ID)


def cancel(events: pl.DataFrame, user_id: str, item_id: str, when: datetime) -> pl.DataFrame:
    """Append a cancellation of everything ``user_id`` bought of ``item_id``."""
    bought = events.filter((pl.col(S.USER_ID) == user_id) & (pl.col(S.ITEM_ID) == item_id))[
        S.QUANTITY
    ].sum()
    row = events.head(1).with_columns(
        pl.lit(user_id).alias(S.USER_ID),
        pl.lit(f"C{user_id}{item_id}").alias(S.SESSION_ID),
        pl.lit(item_id).alias(S.ITEM_ID),
        pl.lit(S.CANCELLATION).alias(S.EVENT_TYPE),
        pl.lit(int(bought)).cast(pl.Int32).alias(S.QUANTITY),
        pl.lit(when).cast(pl.Datetime("us", "UTC")).alias(S.EVENT_TIMESTAMP),
    )
    return pl.concat([events, row]).sort(S.EVENT_TIMESTAMP, S.SESSION_ID, S.ITEM_ID)


def items_table(n_items: int = 40, extra: dict[str, str] | None = None) -> pl.DataFrame:
    """Catalogue ``item_id``, ``title``; ``extra`` adds items that have no sales."""
    names = {**titles(n_items), **(extra or {})}
    return pl.DataFrame({S.ITEM_ID: list(names), S.TITLE: list(names.values())})
