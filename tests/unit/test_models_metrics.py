"""Metrics against hand-computed values, and the evaluation's relevance settings."""

from __future__ import annotations

import math
from datetime import timedelta

import polars as pl
import pytest

from feature_repo import schema as S
from models.evaluation import ALL_ITEMS, NEW_ITEMS, evaluate, format_table, relevance
from models.metrics import (
    coverage,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    recall_at_k,
)
from tests.models_fixtures import START, make_events


def test_metrics_by_hand() -> None:
    recommended = ["a", "b", "c", "d"]
    relevant = {"b", "d", "z"}
    assert recall_at_k(recommended, relevant, 2) == pytest.approx(1 / 3)
    assert recall_at_k(recommended, relevant, 4) == pytest.approx(2 / 3)
    assert precision_at_k(recommended, relevant, 4) == pytest.approx(0.5)
    assert hit_rate_at_k(recommended, relevant, 1) == 0.0
    assert hit_rate_at_k(recommended, relevant, 2) == 1.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(recommended, relevant, 4) == pytest.approx(dcg / ideal)
    assert map_at_k(recommended, relevant, 4) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert ndcg_at_k(recommended, set(), 4) == 0.0
    assert coverage([["a", "b"], ["b", "c"]], 10, 2) == pytest.approx(0.3)
    assert novelty([["a"]], {"a": 0.25}, 1, floor=0.01) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="k=0"):
        recall_at_k(recommended, relevant, 0)


def test_new_items_setting_drops_past_items_before_cutting() -> None:
    events = make_events()
    cutoff = START + timedelta(days=90)
    rel = relevance(events, cutoff, START + timedelta(days=120))
    user = next(u for u in rel.users if rel.relevant(u, NEW_ITEMS) and rel.past.get(u))
    past = sorted(rel.past[user])
    new = sorted(rel.relevant(user, NEW_ITEMS))
    # A list that starts with ten past items, then one new item.
    lists = {
        ALL_ITEMS: {"x": {user: [*past[:10], new[0]]}},
        NEW_ITEMS: {"x": {user: [*past[:10], new[0]]}},
    }
    results = evaluate(lists, rel, [user])
    assert results[NEW_ITEMS]["all_users"]["x"]["hit_rate@10"] == 1.0
    assert results[NEW_ITEMS]["all_users"]["x"]["ndcg@10"] > 0
    assert "popularity" not in format_table(results)  # no baseline row: ratio left as nan


def test_unseen_users_form_their_own_segment() -> None:
    events = make_events()
    cutoff = START + timedelta(days=90)
    newcomer = (
        events.filter(pl.col(S.EVENT_TIMESTAMP) >= cutoff)
        .head(2)
        .with_columns(pl.lit("NEWCOMER").alias(S.USER_ID))
    )
    rel = relevance(pl.concat([events, newcomer]), cutoff, START + timedelta(days=120))
    assert "NEWCOMER" in rel.unseen
    assert "NEWCOMER" in rel.users
    results = evaluate({ALL_ITEMS: {"x": {}}}, rel)
    assert results[ALL_ITEMS]["unseen_users"]["x"]["n_users"] == len(rel.unseen)
