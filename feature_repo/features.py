"""Feature pipelines: daily snapshot tables computed from the events with DuckDB.

A snapshot row for entity ``e`` at ``event_timestamp = s`` (midnight UTC) uses only events
strictly before ``s``, so Feast's point-in-time join never sees the future. Every entity
gets one row a day from the day after its first event to the day after the log ends, which
keeps each view's ``ttl`` short (see the feature definitions).

Purchases and cancellations net out: a cancelled line subtracts its units and value, and a
cancellation whose purchase predates the log subtracts nothing below zero. A cancellation
never counts as a dislike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from feature_repo import schema as S
from feature_repo.config import Paths
from feature_repo.errors import SchemaError

logger = logging.getLogger(__name__)

# Smoothing of cancellation rates toward the global rate: as if every entity started with
# this many lines cancelled at the global rate.
USER_CANCEL_PRIOR_LINES = 10.0
ITEM_CANCEL_PRIOR_LINES = 20.0

# Columns (and dtypes) a basket needs for :func:`session_features`.
SESSION_EVENT_SCHEMA: dict[str, Any] = {
    S.SESSION_ID: pl.String,
    S.ITEM_ID: pl.String,
    S.EVENT_TYPE: pl.String,
    S.QUANTITY: pl.Int32,
    S.PRICE: pl.Float64,
    S.COUNTRY: pl.String,
    S.EVENT_TIMESTAMP: pl.Datetime("us", "UTC"),
}


def check_columns(frame: pl.DataFrame | pl.LazyFrame, required: dict[str, Any]) -> None:
    """Raise :class:`SchemaError` naming every missing column or wrong dtype."""
    actual = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    problems = []
    for name, dtype in required.items():
        if name not in actual:
            problems.append(f"missing column {name!r}")
        elif actual[name] != dtype and not (
            isinstance(dtype, type) and isinstance(actual[name], dtype)
        ):
            problems.append(f"column {name!r} is {actual[name]}, expected {dtype}")
    if problems:
        raise SchemaError("; ".join(problems) + f". Columns present: {list(actual)}.")


def session_features(events: pl.DataFrame) -> pl.DataFrame:
    """Features of each session (basket) from its events, for guests and customers alike.

    The offline pipeline and the service (for a guest's basket in a request) both call
    this, so the two always agree.

    Parameters
    ----------
    events
        Rows with ``session_id``, ``item_id``, ``event_type``, ``quantity``, ``price``,
        ``country`` and ``event_timestamp`` (tz-aware UTC).

    Returns
    -------
    polars.DataFrame
        One row per session: ``session_id``, ``event_timestamp`` (the basket's last
        event) and :data:`feature_repo.schema.SESSION_FEATURES`.
    """
    check_columns(events, SESSION_EVENT_SCHEMA)
    purchase = pl.col(S.EVENT_TYPE) == S.PURCHASE
    sign = pl.when(purchase).then(1).otherwise(-1)
    return (
        events.group_by(S.SESSION_ID)
        .agg(
            pl.col(S.EVENT_TIMESTAMP).max(),
            (pl.col(S.QUANTITY).cast(pl.Int64) * sign).sum().alias("session_units"),
            (pl.col(S.QUANTITY) * pl.col(S.PRICE) * sign).sum().alias("session_value"),
            pl.col(S.ITEM_ID)
            .filter(purchase)
            .n_unique()
            .cast(pl.Int64)
            .alias("session_distinct_items"),
            pl.col(S.COUNTRY).drop_nulls().first().alias("session_country"),
        )
        .with_columns(
            pl.col(S.EVENT_TIMESTAMP).dt.hour().cast(pl.Int64).alias("session_hour"),
            pl.col(S.EVENT_TIMESTAMP).dt.weekday().cast(pl.Int64).alias("session_weekday"),
        )
        .select(S.SESSION_ID, S.EVENT_TIMESTAMP, *S.SESSION_FEATURES)
        .sort(S.EVENT_TIMESTAMP, S.SESSION_ID)
    )


def _windows(expr: str, alias: str, *, partition: str) -> str:
    """SQL for ``expr`` summed over the 7/30/90 days before each snapshot."""
    return ",\n".join(
        f"sum({expr}) OVER (PARTITION BY {partition} ORDER BY d "
        f"ROWS BETWEEN {w} PRECEDING AND 1 PRECEDING) AS {alias}_{w}d"
        for w in S.WINDOWS_DAYS
    )


def _per_window(template: str) -> str:
    """``template`` (with ``{w}``) repeated for each window, comma-separated."""
    return ", ".join(template.format(w=w) for w in S.WINDOWS_DAYS)


def _distinct_windows(con: duckdb.DuckDBPyConnection, key: str, other: str, name: str) -> None:
    """Create table ``name`` with the distinct ``other`` ids per ``key`` per snapshot.

    For each (key, other) pair with purchase days p1 < p2 < ..., the pair counts at a
    snapshot s in window w exactly when the latest purchase before s is at least s - w,
    i.e. for s in [p_k + 1, min(p_{k+1}, p_k + w)]. Adding +1 and -1 at those ends and
    summing over the days gives every window in one pass, with no range join.
    """
    ends = ",\n".join(
        f"least(coalesce(nxt, d + {w}), d + {w}) + 1 AS end_{w}" for w in S.WINDOWS_DAYS
    )
    deltas = "\nUNION ALL\n".join(
        f"SELECT {key}, d + 1 AS d, {w} AS w, 1 AS delta FROM pair_days "
        f"UNION ALL SELECT {key}, end_{w} AS d, {w} AS w, -1 AS delta FROM pair_days"
        for w in S.WINDOWS_DAYS
    )
    sums = ",\n".join(
        f"sum(coalesce(delta_{w}, 0)) OVER (PARTITION BY g.{key} ORDER BY g.d "
        f"ROWS UNBOUNDED PRECEDING) AS n_{w}"
        for w in S.WINDOWS_DAYS
    )
    pivot = ",\n".join(f"sum(delta) FILTER (WHERE w = {w}) AS delta_{w}" for w in S.WINDOWS_DAYS)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE pair_days AS
        SELECT {key}, d, {ends}
        FROM (
            SELECT {key}, {other}, d,
                   lead(d) OVER (PARTITION BY {key}, {other} ORDER BY d) AS nxt
            FROM (SELECT DISTINCT {key}, {other}, d FROM ev
                  WHERE event_type = '{S.PURCHASE}' AND {other} IS NOT NULL
                        AND {key} IS NOT NULL)
        );
        CREATE OR REPLACE TEMP TABLE {name} AS
        WITH deltas AS (
            SELECT {key}, d, {pivot} FROM ({deltas}) GROUP BY {key}, d
        )
        SELECT g.{key}, g.d, {sums}
        FROM {key}_grid g LEFT JOIN deltas USING ({key}, d);
        """
    )


def compute_feature_tables(
    events: pl.LazyFrame | pl.DataFrame,
    *,
    end: datetime | None = None,
    created: datetime | None = None,
) -> dict[str, pl.DataFrame]:
    """Compute the user, item and session feature tables from events.

    Parameters
    ----------
    events
        Cleaned events (see :data:`feature_repo.schema.EVENT_COLUMNS`).
    end
        Last snapshot time (midnight UTC); default the midnight after the last event.
    created
        ``created_timestamp`` stamped on every row; default now.

    Returns
    -------
    dict
        ``{view name: frame}`` with ``event_timestamp`` and ``created_timestamp`` columns
        in microseconds UTC.
    """
    frame = events.collect() if isinstance(events, pl.LazyFrame) else events
    check_columns(
        frame,
        {
            S.USER_ID: pl.String,
            S.ITEM_ID: pl.String,
            S.SESSION_ID: pl.String,
            S.EVENT_TYPE: pl.String,
            S.QUANTITY: pl.Int32,
            S.PRICE: pl.Float64,
            S.EVENT_TIMESTAMP: pl.Datetime("us", "UTC"),
        },
    )
    if frame.height == 0:
        raise SchemaError("no events to compute features from: the events table is empty.")
    created = created or datetime.now(UTC)
    last = frame[S.EVENT_TIMESTAMP].max()
    assert isinstance(last, datetime)
    end_day = (end or last).astimezone(UTC).date()
    if end is None or end.astimezone(UTC) > datetime(
        end_day.year, end_day.month, end_day.day, tzinfo=UTC
    ):
        end_day = end_day.fromordinal(end_day.toordinal() + 1)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    ev_frame = frame.select(*S.EVENT_COLUMNS)  # noqa: F841 - read by DuckDB below
    con.execute(
        f"""
        CREATE TEMP TABLE ev AS
        SELECT *, CAST(event_timestamp AS DATE) AS d,
               CASE WHEN event_type = '{S.PURCHASE}' THEN 1 ELSE -1 END AS sign
        FROM ev_frame WHERE CAST(event_timestamp AS DATE) < DATE '{end_day}'
        """
    )

    # 1. Dense daily grids: one row per entity and day, from its first event to `end_day`.
    for key in (S.USER_ID, S.ITEM_ID):
        con.execute(
            f"""
            CREATE TEMP TABLE {key}_grid AS
            SELECT {key}, CAST(unnest(generate_series(first_d, DATE '{end_day}',
                                                     INTERVAL 1 DAY)) AS DATE) AS d
            FROM (SELECT {key}, min(d) AS first_d FROM ev WHERE {key} IS NOT NULL GROUP BY 1)
            """
        )
    # Global cancellation rate as known before each day (the smoothing prior).
    con.execute(
        f"""
        CREATE TEMP TABLE global_rate AS
        SELECT d, coalesce(
            sum(c) OVER w / nullif(sum(p) OVER w, 0), 0.0) AS rate
        FROM (
            SELECT CAST(unnest(generate_series((SELECT min(d) FROM ev), DATE '{end_day}',
                                               INTERVAL 1 DAY)) AS DATE) AS d
        ) LEFT JOIN (
            SELECT d, count(*) FILTER (WHERE event_type = '{S.PURCHASE}') AS p,
                      count(*) FILTER (WHERE event_type <> '{S.PURCHASE}') AS c
            FROM ev GROUP BY d
        ) USING (d)
        WINDOW w AS (ORDER BY d ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
        """
    )

    # 2. User features.
    _distinct_windows(con, S.USER_ID, S.ITEM_ID, "user_distinct")
    user_sql = f"""
        WITH daily AS (
            SELECT user_id, d,
                count(DISTINCT session_id) FILTER (WHERE event_type = '{S.PURCHASE}') AS orders,
                sum(quantity * sign) AS units,
                sum(quantity * price * sign) AS spend,
                count(*) FILTER (WHERE event_type = '{S.PURCHASE}') AS plines,
                count(*) FILTER (WHERE event_type <> '{S.PURCHASE}') AS clines,
                mode(country) AS day_country
            FROM ev WHERE user_id IS NOT NULL GROUP BY user_id, d
        ), g AS (
            SELECT g.user_id, g.d, coalesce(orders, 0) AS orders, coalesce(units, 0) AS units,
                   coalesce(spend, 0.0) AS spend, coalesce(plines, 0) AS plines,
                   coalesce(clines, 0) AS clines, day_country
            FROM user_id_grid g LEFT JOIN daily USING (user_id, d)
        ), w AS (
            SELECT user_id, d,
                min(d) OVER u_all AS first_d,
                max(CASE WHEN orders > 0 THEN d END) OVER u_prev AS last_order_d,
                sum(orders) OVER u_prev AS frequency,
                sum(spend) OVER u_prev AS monetary,
                {_windows("orders", "user_orders", partition="user_id")},
                {_windows("units", "user_units", partition="user_id")},
                {_windows("spend", "user_spend", partition="user_id")},
                sum(plines) OVER u_prev AS plines_all,
                sum(clines) OVER u_prev AS clines_all,
                mode(day_country) OVER u_prev AS user_country
            FROM g
            WINDOW u_prev AS (PARTITION BY user_id ORDER BY d
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                   u_all AS (PARTITION BY user_id)
        )
        SELECT w.user_id,
               CAST(w.d AS TIMESTAMPTZ) AS event_timestamp,
               CAST(date_diff('day', last_order_d, w.d) AS BIGINT) AS user_recency_days,
               CAST(date_diff('day', first_d, w.d) AS BIGINT) AS user_tenure_days,
               CAST(frequency AS BIGINT) AS user_frequency,
               CAST(greatest(monetary, 0) AS DOUBLE) AS user_monetary,
               {_per_window("CAST(user_orders_{w}d AS BIGINT) AS user_orders_{w}d")},
               {_per_window("CAST(greatest(user_units_{w}d, 0) AS BIGINT) AS user_units_{w}d")},
               {_per_window("CAST(greatest(user_spend_{w}d, 0) AS DOUBLE) AS user_spend_{w}d")},
               {_per_window("CAST(n_{w} AS BIGINT) AS user_distinct_items_{w}d")},
               CAST((clines_all + {USER_CANCEL_PRIOR_LINES} * r.rate)
                    / (plines_all + {USER_CANCEL_PRIOR_LINES}) AS DOUBLE) AS user_cancel_rate,
               user_country
        FROM w JOIN global_rate r USING (d)
        LEFT JOIN user_distinct u USING (user_id, d)
        WHERE w.d > w.first_d
        ORDER BY event_timestamp, user_id
    """
    user = pl.DataFrame(con.sql(user_sql).to_arrow_table())

    # 3. Item features.
    _distinct_windows(con, S.ITEM_ID, S.USER_ID, "item_distinct")
    item_sql = f"""
        WITH daily AS (
            SELECT item_id, d,
                sum(quantity * sign) AS units,
                sum(price) FILTER (WHERE event_type = '{S.PURCHASE}') AS price_sum,
                min(price) FILTER (WHERE event_type = '{S.PURCHASE}') AS price_min,
                max(price) FILTER (WHERE event_type = '{S.PURCHASE}') AS price_max,
                count(*) FILTER (WHERE event_type = '{S.PURCHASE}') AS plines,
                count(*) FILTER (WHERE event_type <> '{S.PURCHASE}') AS clines
            FROM ev GROUP BY item_id, d
        ), g AS (
            SELECT g.item_id, g.d, coalesce(units, 0) AS units, price_sum, price_min,
                   price_max, coalesce(plines, 0) AS plines, coalesce(clines, 0) AS clines
            FROM item_id_grid g LEFT JOIN daily USING (item_id, d)
        ), w AS (
            SELECT item_id, d,
                min(d) OVER i_all AS first_d,
                {_windows("units", "item_units", partition="item_id")},
                sum(price_sum) OVER i_prev / nullif(sum(plines) OVER i_prev, 0) AS price_mean,
                min(price_min) OVER i_prev AS price_min,
                max(price_max) OVER i_prev AS price_max,
                sum(plines) OVER i_prev AS plines_all,
                sum(clines) OVER i_prev AS clines_all,
                min(CASE WHEN plines > 0 THEN d END) OVER i_prev AS first_sale_d
            FROM g
            WINDOW i_prev AS (PARTITION BY item_id ORDER BY d
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                   i_all AS (PARTITION BY item_id)
        )
        SELECT w.item_id,
               CAST(w.d AS TIMESTAMPTZ) AS event_timestamp,
               {_per_window("CAST(greatest(item_units_{w}d, 0) AS BIGINT) AS item_units_{w}d")},
               {_per_window("CAST(n_{w} AS BIGINT) AS item_buyers_{w}d")},
               CAST(price_mean AS DOUBLE) AS item_price_mean,
               CAST(price_min AS DOUBLE) AS item_price_min,
               CAST(price_max AS DOUBLE) AS item_price_max,
               CAST((clines_all + {ITEM_CANCEL_PRIOR_LINES} * r.rate)
                    / (plines_all + {ITEM_CANCEL_PRIOR_LINES}) AS DOUBLE) AS item_cancel_rate,
               CAST(date_diff('day', first_sale_d, w.d) AS BIGINT)
                   AS item_days_since_first_sale
        FROM w JOIN global_rate r USING (d)
        LEFT JOIN item_distinct i USING (item_id, d)
        WHERE w.d > w.first_d
        ORDER BY event_timestamp, item_id
    """
    item = pl.DataFrame(con.sql(item_sql).to_arrow_table())
    con.close()

    # 4. Session features, with the same code the service runs on a guest's basket.
    session = session_features(frame.select(*SESSION_EVENT_SCHEMA))

    tables = {S.USER_VIEW: user, S.ITEM_VIEW: item, S.SESSION_VIEW: session}
    for name, table in tables.items():
        tables[name] = _stamp(table, created)
        logger.info("features: %s has %d rows", name, table.height)
    return tables


def _stamp(table: pl.DataFrame, created: datetime) -> pl.DataFrame:
    """Microsecond UTC timestamps (readable by Spark too) and the ``created_timestamp``."""
    return table.with_columns(
        pl.col(S.EVENT_TIMESTAMP).dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
        pl.lit(created).cast(pl.Datetime("us", "UTC")).alias(S.CREATED_TIMESTAMP),
    )


def write_feature_tables(tables: dict[str, pl.DataFrame], paths: Paths) -> list[Path]:
    """Write each table atomically to ``paths.feature_table(name)``.

    Rows are sorted by time in small row groups, so that materializing or joining a
    recent window reads only the row groups whose timestamp statistics overlap it.
    """
    paths.features.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        target = paths.feature_table(name)
        tmp = target.with_suffix(".tmp")
        table.write_parquet(tmp, statistics=True, row_group_size=32_768)
        tmp.replace(target)
        written.append(target)
    return written


def build_features(paths: Paths, *, end: datetime | None = None) -> dict[str, pl.DataFrame]:
    """Compute every feature table from the ingested events and write it."""
    from feature_repo.ingest import scan_events

    if not any(paths.events.glob("*/*.parquet")):
        raise SchemaError(
            f"no events under {paths.events}.\nHint: run `python -m feature_repo ingest` first."
        )
    started = time.perf_counter()
    tables = compute_feature_tables(scan_events(paths).drop(S.DAY), end=end)
    write_feature_tables(tables, paths)
    logger.info("features: built in %.1f s", time.perf_counter() - started)
    return tables


def feature_names(
    tables: Iterable[str] = (S.USER_VIEW, S.ITEM_VIEW, S.SESSION_VIEW),
) -> dict[str, tuple[str, ...]]:
    """The feature names of each view, as computed here."""
    known = {
        S.USER_VIEW: S.USER_FEATURES,
        S.ITEM_VIEW: S.ITEM_FEATURES,
        S.SESSION_VIEW: S.SESSION_FEATURES,
    }
    return {t: known[t] for t in tables}


def table_path(paths: Paths, view: str) -> Path:
    return paths.feature_table(view)
