"""Offline evaluation on a time window: relevance, metrics per list, table, JSON and plot.

Users evaluated are those with at least one purchase in the window. Two relevance
settings:

``all``
    every item the user bought in the window (repeat purchases count);
``new``
    only items the user had not bought before the cut-off; every list, baselines
    included, drops the user's past items before it is cut at ``k``.

Each setting is reported over all evaluated users and, as its own row, over users unseen
before the cut-off.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feature_repo import schema as S
from models.data import as_utc, net_user_items, window
from models.metrics import (
    coverage,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    recall_at_k,
)

logger = logging.getLogger(__name__)

ALL_ITEMS = "all"
NEW_ITEMS = "new"
SETTINGS: tuple[str, ...] = (ALL_ITEMS, NEW_ITEMS)
SEGMENT_ALL = "all_users"
SEGMENT_UNSEEN = "unseen_users"
SEGMENTS: tuple[str, ...] = (SEGMENT_ALL, SEGMENT_UNSEEN)
RECALL_KS: tuple[int, ...] = (10, 50, 100)
K = 10
METRICS: tuple[str, ...] = (
    *(f"recall@{k}" for k in RECALL_KS),
    f"ndcg@{K}",
    f"map@{K}",
    f"precision@{K}",
    f"hit_rate@{K}",
    f"coverage@{K}",
    f"novelty@{K}",
)
BASELINE = "popularity_baseline"
LIST_DEPTH = max(RECALL_KS)

Lists = Mapping[str, Sequence[str]]  # user_id -> item ids, best first


@dataclass(frozen=True)
class Relevance:
    """What each evaluated user bought in the window, and what they had bought before."""

    cutoff: datetime
    end: datetime
    bought: dict[str, set[str]]
    past: dict[str, set[str]]
    unseen: frozenset[str]
    item_share: dict[str, float]
    n_catalogue: int
    n_train_users: int

    @property
    def users(self) -> list[str]:
        return sorted(self.bought)

    def relevant(self, user_id: str, setting: str) -> set[str]:
        if setting == ALL_ITEMS:
            return self.bought[user_id]
        return self.bought[user_id] - self.past.get(user_id, set())


def relevance(events: pl.DataFrame, cutoff: datetime, end: datetime) -> Relevance:
    """Relevance of the window ``[cutoff, end)`` against the history before ``cutoff``."""
    cutoff, end = as_utc(cutoff), as_utc(end)
    history = events.filter(pl.col(S.EVENT_TIMESTAMP) < cutoff)
    future = window(events, cutoff, end).filter(
        (pl.col(S.EVENT_TYPE) == S.PURCHASE) & pl.col(S.USER_ID).is_not_null()
    )
    bought = {
        u: set(items)
        for u, items in future.group_by(S.USER_ID).agg(pl.col(S.ITEM_ID).unique()).iter_rows()
    }
    net = net_user_items(history)
    past = {
        u: set(items) for u, items in net.group_by(S.USER_ID).agg(pl.col(S.ITEM_ID)).iter_rows()
    }
    buyers_before = set(
        history.filter(pl.col(S.EVENT_TYPE) == S.PURCHASE)[S.USER_ID].drop_nulls().unique()
    )
    n_train_users = max(len(buyers_before), 1)
    share = net.group_by(S.ITEM_ID).agg(pl.len().alias("_n"))
    item_share = {i: n / n_train_users for i, n in share.iter_rows()}
    n_catalogue = history.filter(pl.col(S.EVENT_TYPE) == S.PURCHASE)[S.ITEM_ID].n_unique()
    return Relevance(
        cutoff=cutoff,
        end=end,
        bought=bought,
        past=past,
        unseen=frozenset(u for u in bought if u not in buyers_before),
        item_share=item_share,
        n_catalogue=n_catalogue,
        n_train_users=n_train_users,
    )


def evaluate_lists(
    lists: Lists, rel: Relevance, setting: str, users: Sequence[str]
) -> dict[str, float]:
    """Mean metrics of ``lists`` over ``users`` in one relevance setting.

    In the ``new`` setting, users with no new item are left out, and each list first
    drops the user's past items.
    """
    rows: list[list[float]] = []
    cut_lists: list[list[str]] = []
    for user in users:
        relevant = rel.relevant(user, setting)
        if not relevant:
            continue
        items = list(lists.get(user, ()))
        if setting == NEW_ITEMS:
            past = rel.past.get(user, set())
            items = [i for i in items if i not in past]
        cut_lists.append(items[:K])
        rows.append(
            [
                *(recall_at_k(items, relevant, k) for k in RECALL_KS),
                ndcg_at_k(items, relevant, K),
                map_at_k(items, relevant, K),
                precision_at_k(items, relevant, K),
                hit_rate_at_k(items, relevant, K),
            ]
        )
    means = np.mean(rows, axis=0) if rows else np.zeros(len(METRICS) - 2)
    result = dict(zip(METRICS[:-2], (float(v) for v in means), strict=True))
    result[f"coverage@{K}"] = coverage(cut_lists, rel.n_catalogue, K)
    result[f"novelty@{K}"] = novelty(cut_lists, rel.item_share, K, floor=1.0 / rel.n_train_users)
    result["n_users"] = float(len(rows))
    return result


def evaluate(
    lists_by_setting: Mapping[str, Mapping[str, Lists]],
    rel: Relevance,
    users: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every figure: ``{setting: {segment: {list name: {metric: value}}}}``.

    ``lists_by_setting[setting][name]`` holds each user's list for that setting (the
    ``new`` lists are normally built with the user's past items excluded already).
    ``users`` defaults to every user with a purchase in the window.
    """
    users = rel.users if users is None else sorted(users)
    unseen = [u for u in users if u in rel.unseen]
    out: dict[str, Any] = {}
    for setting, by_name in lists_by_setting.items():
        out[setting] = {
            SEGMENT_ALL: {
                n: evaluate_lists(lists, rel, setting, users) for n, lists in by_name.items()
            },
            SEGMENT_UNSEEN: {
                n: evaluate_lists(lists, rel, setting, unseen) for n, lists in by_name.items()
            },
        }
    return out


_SHORT = {
    "recall@10": "R@10",
    "recall@50": "R@50",
    "recall@100": "R@100",
    "ndcg@10": "NDCG@10",
    "map@10": "MAP@10",
    "precision@10": "P@10",
    "hit_rate@10": "HR@10",
    "coverage@10": "Cov@10",
    "novelty@10": "Nov@10",
}


def format_table(results: Mapping[str, Any]) -> str:
    """The figures as fixed-width text tables, one per relevance setting.

    ``xBase`` is NDCG@10 over the popularity baseline's NDCG@10 in the same row group.
    """
    lines: list[str] = []
    for setting, by_segment in results.items():
        title = (
            "Repeat purchases count"
            if setting == ALL_ITEMS
            else "Only items new to the user (past items dropped before cutting at k)"
        )
        lines.append(f"\n{title}  [setting={setting}]")
        header = f"{'list':<22}{'users':>7}" + "".join(f"{_SHORT[m]:>9}" for m in METRICS)
        header += f"{'xBase':>8}"
        for segment, by_name in by_segment.items():
            lines.append(f"-- {segment}")
            lines.append(header)
            base = by_name.get(BASELINE, {}).get("ndcg@10", 0.0)
            for name, figures in by_name.items():
                ratio = figures["ndcg@10"] / base if base > 0 else float("nan")
                lines.append(
                    f"{name:<22}{int(figures['n_users']):>7}"
                    + "".join(f"{figures[m]:>9.4f}" for m in METRICS)
                    + f"{ratio:>8.2f}"
                )
    return "\n".join(lines)


def write_json(payload: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str))
    tmp.replace(path)
    return path


def plot(results: Mapping[str, Any], path: Path) -> Path:
    """Bar charts of NDCG@10 and recall@100 per list, both settings, all users."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(results)
    fig, axes = plt.subplots(len(settings), 2, figsize=(12, 4 * len(settings)), squeeze=False)
    for row, setting in enumerate(settings):
        by_name = results[setting][SEGMENT_ALL]
        names = list(by_name)
        for col, metric in enumerate(("ndcg@10", "recall@100")):
            ax = axes[row][col]
            values = [by_name[n][metric] for n in names]
            colors = ["#888888" if n == BASELINE else "#3b75af" for n in names]
            ax.barh(names, values, color=colors)
            ax.invert_yaxis()
            ax.set_title(f"{metric}  (relevance: {setting} items)")
            for y, v in enumerate(values):
                ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
            ax.set_xlim(0, max([*values, 1e-6]) * 1.2)
    fig.suptitle("Offline evaluation on the test window (users with a purchase in it)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
