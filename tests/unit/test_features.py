"""Feature pipelines: windows, netting of cancellations, no look-ahead, sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from feature_repo import schema as S
from feature_repo.errors import SchemaError
from feature_repo.features import compute_feature_tables, session_features

DAY0 = datetime(2011, 1, 1, tzinfo=UTC)


def events_frame(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (user, session, item, type, qty, price, day offset, hour)."""
    return pl.DataFrame(
        {
            S.USER_ID: [r[0] for r in rows],
            S.SESSION_ID: [r[1] for r in rows],
            S.ITEM_ID: [r[2] for r in rows],
            S.EVENT_TYPE: [r[3] for r in rows],
            S.QUANTITY: [r[4] for r in rows],
            S.PRICE: [r[5] for r in rows],
            S.COUNTRY: ["France"] * len(rows),
            S.EVENT_TIMESTAMP: [DAY0 + timedelta(days=r[6], hours=r[7]) for r in rows],
        },
        schema={
            S.USER_ID: pl.String,
            S.SESSION_ID: pl.String,
            S.ITEM_ID: pl.String,
            S.EVENT_TYPE: pl.String,
            S.QUANTITY: pl.Int32,
            S.PRICE: pl.Float64,
            S.COUNTRY: pl.String,
            S.EVENT_TIMESTAMP: pl.Datetime("us", "UTC"),
        },
    )


P, C = S.PURCHASE, S.CANCELLATION
HISTORY = events_frame(
    [
        ("u1", "s1", "a", P, 2, 1.0, 0, 10),
        ("u1", "s1", "b", P, 1, 5.0, 0, 10),
        ("u1", "s2", "a", P, 3, 1.0, 5, 9),
        ("u1", "Cs3", "a", C, 1, 1.0, 6, 9),
        ("u2", "s4", "a", P, 10, 1.0, 40, 12),
        (None, "s5", "b", P, 1, 5.0, 40, 13),
    ]
)


def row_at(frame: pl.DataFrame, key: str, value: str, day: int) -> dict:
    ts = DAY0 + timedelta(days=day)
    hit = frame.filter((pl.col(key) == value) & (pl.col(S.EVENT_TIMESTAMP) == ts))
    assert hit.height == 1, f"no single row for {value} at day {day}"
    return hit.row(0, named=True)


def test_user_windows_recency_and_netting() -> None:
    tables = compute_feature_tables(HISTORY, end=DAY0 + timedelta(days=45))
    user = tables[S.USER_VIEW]
    # Snapshot on day 5 sees only day 0: the order placed on day 5 is not yet known.
    day5 = row_at(user, S.USER_ID, "u1", 5)
    assert day5["user_frequency"] == 1
    assert day5["user_units_7d"] == 3
    assert day5["user_spend_7d"] == pytest.approx(7.0)
    assert day5["user_recency_days"] == 5
    assert day5["user_distinct_items_7d"] == 2
    # Day 7 sees both orders and the cancellation of one unit of `a`.
    day7 = row_at(user, S.USER_ID, "u1", 7)
    assert day7["user_frequency"] == 2
    assert day7["user_units_7d"] == 2 + 1 + 3 - 1
    assert day7["user_monetary"] == pytest.approx(2 + 5 + 3 - 1)
    assert day7["user_recency_days"] == 2
    assert day7["user_tenure_days"] == 7
    # Day 8: day 0 has left the 7-day window, the 30-day window still holds it.
    day8 = row_at(user, S.USER_ID, "u1", 8)
    assert day8["user_orders_7d"] == 1
    assert day8["user_orders_30d"] == 2
    assert day8["user_distinct_items_7d"] == 1
    assert day8["user_distinct_items_30d"] == 2
    assert day8["user_country"] == "France"
    assert 0 < day8["user_cancel_rate"] < 1
    # No snapshot before the first event, none on the day of it (nothing known yet).
    assert user.filter(pl.col(S.USER_ID) == "u2")[S.EVENT_TIMESTAMP].min() == DAY0 + timedelta(
        days=41
    )
    assert user[S.USER_ID].null_count() == 0  # guests have no user features


def test_item_buyers_are_distinct_users_in_the_window() -> None:
    tables = compute_feature_tables(HISTORY, end=DAY0 + timedelta(days=45))
    item = tables[S.ITEM_VIEW]
    day41 = row_at(item, S.ITEM_ID, "a", 41)
    assert day41["item_buyers_7d"] == 1  # u2 only
    assert day41["item_buyers_90d"] == 2  # u1 (twice) counted once, and u2
    assert day41["item_units_90d"] == 2 + 3 - 1 + 10
    assert day41["item_days_since_first_sale"] == 41
    assert day41["item_price_mean"] == pytest.approx(1.0)


def test_distinct_buyers_match_a_brute_force_count() -> None:
    rng = np.random.default_rng(7)
    n = 400
    rows = [
        (
            f"u{rng.integers(12)}",
            f"s{i}",
            f"i{rng.integers(4)}",
            P,
            1,
            1.0,
            int(rng.integers(120)),
            10,
        )
        for i in range(n)
    ]
    frame = events_frame(rows)
    item = compute_feature_tables(frame, end=DAY0 + timedelta(days=125))[S.ITEM_VIEW]
    for snapshot in item.sample(40, seed=1).iter_rows(named=True):
        s = snapshot[S.EVENT_TIMESTAMP]
        for w in S.WINDOWS_DAYS:
            window = frame.filter(
                (pl.col(S.ITEM_ID) == snapshot[S.ITEM_ID])
                & (pl.col(S.EVENT_TIMESTAMP) < s)
                & (pl.col(S.EVENT_TIMESTAMP) >= s - timedelta(days=w))
            )
            assert snapshot[f"item_buyers_{w}d"] == window[S.USER_ID].n_unique(), (snapshot, w)


def test_timestamps_are_microsecond_utc_with_created_timestamp() -> None:
    created = datetime(2020, 1, 1, tzinfo=UTC)
    tables = compute_feature_tables(HISTORY, created=created)
    for table in tables.values():
        assert table.schema[S.EVENT_TIMESTAMP] == pl.Datetime("us", "UTC")
        assert table.schema[S.CREATED_TIMESTAMP] == pl.Datetime("us", "UTC")
        assert table[S.CREATED_TIMESTAMP].unique().to_list() == [created]


def test_session_features_for_a_guest_basket() -> None:
    basket = HISTORY.filter(pl.col(S.SESSION_ID).is_in(["s1", "s5"]))
    out = session_features(basket)
    out = out.sort(S.SESSION_ID)
    assert out[S.SESSION_ID].to_list() == ["s1", "s5"]
    s1 = out.row(0, named=True)
    assert (s1["session_units"], s1["session_value"], s1["session_distinct_items"]) == (3, 7.0, 2)
    assert (s1["session_hour"], s1["session_country"]) == (10, "France")
    assert s1["session_weekday"] == DAY0.isoweekday()


def test_missing_column_is_named() -> None:
    with pytest.raises(SchemaError, match="missing column 'price'"):
        session_features(HISTORY.drop(S.PRICE))
    with pytest.raises(SchemaError, match="events table is empty"):
        compute_feature_tables(HISTORY.head(0))
