"""Blending: quotas, merged duplicates, sources kept as features, the cold-start policy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feature_repo import schema as S
from feature_repo.errors import BadRequestError
from models.blend import (
    N_SOURCES,
    PERSONALISED,
    POPULARITY,
    SESSION,
    UI_TIMES_BOUGHT,
    Blender,
    UserItemFeatures,
    rank_column,
    score_column,
)
from models.retrievers import (
    ALSRetriever,
    BuyAgainRetriever,
    ContentRetriever,
    CoVisitationRetriever,
    PopularityRetriever,
    SessionRetriever,
)
from tests.models_fixtures import START, make_events

CUTOFF = START + timedelta(days=100)


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return make_events()


@pytest.fixture(scope="module")
def blender(events: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Blender:
    cache: Path = tmp_path_factory.mktemp("blend_embeddings")
    retrievers = [
        BuyAgainRetriever(),
        PopularityRetriever(),
        CoVisitationRetriever(),
        ALSRetriever(factors=8, iterations=5, random_state=1),
        ContentRetriever(cache_dir=cache),
        SessionRetriever(cache_dir=cache),
    ]
    fitted = {r.name: r.fit(events, cutoff=CUTOFF) for r in retrievers}
    content = fitted["content"]
    assert isinstance(content, ContentRetriever)
    user_item = UserItemFeatures().fit(events, cutoff=CUTOFF, content=content)
    return Blender(fitted, user_item)


def known_user(events: pl.DataFrame) -> str:
    before = events.filter(pl.col(S.EVENT_TIMESTAMP) < CUTOFF)
    return str(before[S.USER_ID].drop_nulls().mode().sort()[0])


def test_union_with_sources_and_ranks_as_features(blender: Blender, events: pl.DataFrame) -> None:
    user = known_user(events)
    cands = blender.candidates(user_id=user, n_candidates=20)
    assert cands.policy == PERSONALISED
    assert len(cands.item_ids) == len(set(cands.item_ids.tolist())) <= 20
    assert list(cands.features.columns) == blender.feature_names
    assert len(cands.features) == len(cands.item_ids) == len(cands.sources)
    for j, item in enumerate(cands.item_ids.tolist()):
        for name in blender.source_names:
            ids, _ = blender.retrievers[name].recommend(user, n_candidates=20)
            proposed = item in set(ids.tolist())
            assert (name in cands.sources[j]) == proposed
            rank = cands.features[rank_column(name)].iloc[j]
            if proposed:
                assert rank == ids.tolist().index(item) + 1
                assert np.isfinite(cands.features[score_column(name)].iloc[j])
            else:
                assert np.isnan(rank)
        assert cands.features[N_SOURCES].iloc[j] == len(cands.sources[j])


def test_each_source_gets_its_quota(blender: Blender, events: pl.DataFrame) -> None:
    user = known_user(events)
    blender.quotas = {"buy_again": 0.5}
    try:
        cands = blender.candidates(user_id=user, n_candidates=10)
    finally:
        blender.quotas = dict(__import__("models.blend").blend.DEFAULT_QUOTAS)
    top_buy_again, _ = blender.retrievers["buy_again"].recommend(user, n_candidates=5)
    assert set(top_buy_again.tolist()) <= set(cands.item_ids.tolist())


def test_user_item_features(blender: Blender, events: pl.DataFrame) -> None:
    user = known_user(events)
    cands = blender.candidates(user_id=user, n_candidates=30)
    bought = set(
        events.filter((pl.col(S.USER_ID) == user) & (pl.col(S.EVENT_TIMESTAMP) < CUTOFF))[
            S.ITEM_ID
        ].to_list()
    )
    times = cands.features[UI_TIMES_BOUGHT].to_numpy()
    for item, value in zip(cands.item_ids.tolist(), times, strict=True):
        assert (value > 0) == (item in bought)


def test_cold_start_policy(blender: Blender) -> None:
    guest = blender.candidates(user_id=None, n_candidates=10)
    assert guest.policy == POPULARITY
    assert all(s == ["popularity"] for s in guest.sources)
    stranger = blender.candidates(user_id="NEVER-SEEN", session_items=["I001"], n_candidates=10)
    assert stranger.policy == SESSION
    assert any("session" in s for s in stranger.sources)
    assert not any("buy_again" in s for s in stranger.sources)


def test_unknown_basket_item_is_skipped_and_counted(blender: Blender) -> None:
    before = blender.n_unknown_items_
    cands = blender.candidates(user_id=None, session_items=["I001", "NOPE", "ALSO-NOPE"])
    assert cands.n_unknown_items == 2
    assert blender.n_unknown_items_ == before + 2
    only_unknown = blender.candidates(user_id=None, session_items=["NOPE"], n_candidates=5)
    assert only_unknown.policy == POPULARITY
    assert len(only_unknown.item_ids) == 5


def test_wrong_id_types_are_rejected(blender: Blender) -> None:
    with pytest.raises(BadRequestError, match=r"user_id=12 has type int"):
        blender.candidates(user_id=12)  # type: ignore[arg-type]
    with pytest.raises(BadRequestError, match=r"session_items\[0\]=3.5 has type float"):
        blender.candidates(user_id=None, session_items=[3.5])  # type: ignore[list-item]


def test_exclude_applies_to_every_source(blender: Blender, events: pl.DataFrame) -> None:
    user = known_user(events)
    first = blender.candidates(user_id=user, n_candidates=10).item_ids[:4].tolist()
    again = blender.candidates(user_id=user, n_candidates=10, exclude=set(first))
    assert not set(first) & set(again.item_ids.tolist())
