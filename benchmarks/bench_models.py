"""Benchmarks of the models on the real log, each next to a baseline run in the same process.

================================  ==========================================================
measure                           baseline
================================  ==========================================================
ALS fit on the training window    (reported per iteration; no baseline)
XGBoost scoring, 200 candidates   the same 200 rows scored one row at a time
candidates + ranking, 1 request   (the serving budget: about 10 ms)
MiniLM titles per second          (throughput; no baseline)
point-in-time training set        hand-written DuckDB ASOF JOIN of the same rows
``make train`` wall time          (read from the last training run's report)
================================  ==========================================================

Needs the ingested events, the feature tables and an applied registry under
``SHELFWISE_DATA_DIR`` (``python -m feature_repo demo``); the scoring rows need a stored
model (``python -m models train``). A part whose inputs are missing is skipped and says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _timings(fn: Callable[[], Any], *, repeat: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_als(events: Any, cutoff: Any, repeat: int) -> dict[str, Any]:
    from models.retrievers import ALSRetriever

    retriever = ALSRetriever()
    times = _timings(lambda: retriever.fit(events, cutoff=cutoff), repeat=repeat, warmup=1)
    median = statistics.median(times)
    return {
        "als_fit_s_median": median,
        "als_fit_s_p95": _pct(times, 95),
        "als_iterations": retriever.iterations,
        "als_s_per_iteration": median / retriever.iterations,
        "als_matrix": list(retriever.user_items_.shape),
        "als_nnz": int(retriever.user_items_.nnz),
    }


def bench_scoring(rec: Any, user_ids: list[str], repeat: int) -> dict[str, Any]:
    """Batch scoring of 200 candidates against one-row-at-a-time, interleaved."""
    frames = []
    for user in user_ids:
        cands = rec.candidates(user_id=user, n_candidates=200)
        if len(cands.item_ids) == 200:
            n = len(cands.item_ids)
            frames.append(
                rec.feature_frame(
                    cands,
                    user_features={name: 1.0 for name in rec.user_feature_names},
                    item_features={name: np.ones(n) for name in rec.item_feature_names},
                )
            )
        if len(frames) >= 5:
            break
    frame = frames[0][rec.ranker.feature_names_]
    batch: list[float] = []
    single: list[float] = []
    rec.ranker.predict(frame)
    for _ in range(repeat):
        start = time.perf_counter()
        rec.ranker.predict(frame)
        batch.append(time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(len(frame)):
            rec.ranker.predict(frame.iloc[[i]])
        single.append(time.perf_counter() - start)

    # One whole request: candidates, features frame, contributions, sort.
    request: list[float] = []
    user = user_ids[0]
    for i in range(repeat * 5 + 3):
        start = time.perf_counter()
        cands = rec.candidates(user_id=user, n_candidates=200)
        n = len(cands.item_ids)
        rec.rank(
            cands,
            user_id=user,
            user_features={name: 1.0 for name in rec.user_feature_names},
            item_features={name: np.ones(n) for name in rec.item_feature_names},
        )
        if i >= 3:
            request.append(time.perf_counter() - start)
    cand_only = _timings(lambda: rec.candidates(user_id=user, n_candidates=200), repeat=repeat * 5)
    return {
        "score_200_batch_ms_p50": 1000 * _pct(batch, 50),
        "score_200_batch_ms_p99": 1000 * _pct(batch, 99),
        "score_200_one_by_one_ms_p50": 1000 * _pct(single, 50),
        "score_200_one_by_one_ms_p99": 1000 * _pct(single, 99),
        "candidates_ms_p50": 1000 * _pct(cand_only, 50),
        "candidates_ms_p99": 1000 * _pct(cand_only, 99),
        "request_ms_p50": 1000 * _pct(request, 50),
        "request_ms_p99": 1000 * _pct(request, 99),
    }


def bench_minilm(titles: list[str], repeat: int) -> dict[str, Any]:
    from models.embeddings import _load_model

    model = _load_model()
    model.encode(titles[:32], batch_size=32, show_progress_bar=False)
    times = _timings(
        lambda: model.encode(
            titles, batch_size=128, normalize_embeddings=True, show_progress_bar=False
        ),
        repeat=repeat,
        warmup=0,
    )
    return {"minilm_titles": len(titles), "minilm_titles_per_s": len(titles) / min(times)}


def asof_join(settings: Any, entity: Any) -> Any:
    """The same point-in-time rows with a hand-written DuckDB ASOF JOIN (latest row at or
    before the entity's time, newest ``created_timestamp`` first, within the views' ttl)."""
    import duckdb

    from feature_repo import schema as S

    paths = settings.paths
    con = duckdb.connect()
    con.register("entity", entity)
    user_cols = ", ".join(f"u.{c}" for c in S.USER_FEATURES)
    item_cols = ", ".join(f"i.{c}" for c in S.ITEM_FEATURES)
    sql = f"""
        WITH u_t AS (
            SELECT * FROM read_parquet('{paths.feature_table(S.USER_VIEW)}')
            QUALIFY row_number() OVER (PARTITION BY user_id, event_timestamp
                                       ORDER BY created_timestamp DESC) = 1),
        i_t AS (
            SELECT * FROM read_parquet('{paths.feature_table(S.ITEM_VIEW)}')
            QUALIFY row_number() OVER (PARTITION BY item_id, event_timestamp
                                       ORDER BY created_timestamp DESC) = 1)
        SELECT e.user_id, e.item_id, e.event_timestamp, {user_cols}, {item_cols}
        FROM entity e
        ASOF LEFT JOIN u_t u
            ON e.user_id = u.user_id AND e.event_timestamp >= u.event_timestamp
        ASOF LEFT JOIN i_t i
            ON e.item_id = i.item_id AND e.event_timestamp >= i.event_timestamp
    """
    return con.execute(sql).df()


def bench_point_in_time(settings: Any, store: Any, pairs: Any, repeat: int) -> dict[str, Any]:
    from feature_repo import schema as S
    from models.store_features import historical_features

    feast_t: list[float] = []
    duck_t: list[float] = []
    feast_df = duck_df = None
    for _ in range(repeat):
        start = time.perf_counter()
        feast_df = historical_features(store, S.RANKER_SERVICE, pairs)
        feast_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        duck_df = asof_join(settings, pairs)
        duck_t.append(time.perf_counter() - start)
    assert feast_df is not None
    assert duck_df is not None
    # Same rows, same values: compare one numeric feature of each view.
    merged = pairs.assign(
        _feast_u=feast_df["user_frequency"].to_numpy(),
        _feast_i=feast_df["item_buyers_30d"].to_numpy(),
    ).merge(
        duck_df[[S.USER_ID, S.ITEM_ID, "user_frequency", "item_buyers_30d"]],
        on=[S.USER_ID, S.ITEM_ID],
    )
    agree_u = float(
        np.mean(np.isclose(merged["_feast_u"], merged["user_frequency"], equal_nan=True))
    )
    agree_i = float(
        np.mean(np.isclose(merged["_feast_i"], merged["item_buyers_30d"], equal_nan=True))
    )
    f, d = statistics.median(feast_t), statistics.median(duck_t)
    return {
        "pit_rows": len(pairs),
        "pit_feast_s_median": f,
        "pit_duckdb_asof_s_median": d,
        "pit_ratio": f / d,
        "pit_values_agree_user": agree_u,
        "pit_values_agree_item": agree_i,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks models", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--pit-rows", type=int, default=200_000)
    args = parser.parse_args(argv)

    import pandas as pd
    import polars as pl

    from feature_repo import schema as S
    from feature_repo.config import load_settings
    from models.training import load_events, split_of

    settings = load_settings()
    figures: dict[str, Any] = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} "
        f"cores, Python {platform.python_version()}"
    }
    if not settings.paths.items.exists():
        print(f"no ingested events under {settings.data_dir}: run `python -m feature_repo demo`")
        return 1
    events, items = load_events(settings)
    split = split_of(events)

    figures.update(bench_als(events, split.test_start, max(3, args.repeat // 2)))

    titles = items[S.TITLE].drop_nulls().head(512).to_list() if items is not None else []
    if titles:
        figures.update(bench_minilm(titles, 3))

    try:
        from models.api import load_recommender

        rec = load_recommender()
    except Exception as exc:
        logger.warning("no stored model (%s): scoring skipped", exc)
        rec = None
    if rec is not None:
        users = sorted(
            u for u in events[S.USER_ID].drop_nulls().unique().to_list() if rec.known_user(u)
        )[:50]
        figures.update(bench_scoring(rec, users, args.repeat * 3))

    try:
        from feature_repo.store import get_store

        store = get_store(settings)
        rng = np.random.default_rng(0)
        known = events.filter(pl.col(S.EVENT_TIMESTAMP) < split.test_start)
        user_ids = known[S.USER_ID].drop_nulls().unique().sort().to_numpy()
        item_ids = known[S.ITEM_ID].unique().sort().to_numpy()
        n = args.pit_rows
        pairs = (
            pd.DataFrame(
                {
                    S.USER_ID: rng.choice(user_ids, n),
                    S.ITEM_ID: rng.choice(item_ids, n),
                    S.EVENT_TIMESTAMP: pd.Timestamp(split.test_start),
                }
            )
            .drop_duplicates([S.USER_ID, S.ITEM_ID])
            .reset_index(drop=True)
        )
        figures.update(bench_point_in_time(settings, store, pairs, 3))
    except Exception as exc:
        logger.warning("point-in-time benchmark skipped: %s", exc)

    report = settings.paths.reports / "evaluation.json"
    if report.exists():
        figures["train_wall_s_last_run"] = json.loads(report.read_text()).get("wall_seconds")

    print(f"{'measure':<34}{'value':>14}")
    for key, value in figures.items():
        text = f"{value:>14.3f}" if isinstance(value, float) else f"{value!s:>14}"
        print(f"{key:<34}{text}")
    return 0
