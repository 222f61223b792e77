"""Contract suite run over every retriever, then the cases particular to each one."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from feature_repo import schema as S
from feature_repo.errors import BadRequestError, NotFittedError, SchemaError
from models.retrievers import (
    RETRIEVERS,
    ALSRetriever,
    BuyAgainRetriever,
    ContentRetriever,
    CoVisitationRetriever,
    PopularityRetriever,
    Retriever,
    SessionRetriever,
)
from tests.models_fixtures import START, cancel, items_table, make_events

CUTOFF = START + timedelta(days=100)


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return make_events()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


def build(name: str, cache_dir: Path) -> Retriever:
    cls = RETRIEVERS[name]
    if cls in (ContentRetriever, SessionRetriever):
        return cls(cache_dir=cache_dir)  # type: ignore[call-arg]
    if cls is ALSRetriever:
        return ALSRetriever(factors=8, iterations=5, random_state=3)
    return cls()


@pytest.fixture(scope="module")
def fitted(events: pl.DataFrame, cache_dir: Path) -> dict[str, Retriever]:
    return {name: build(name, cache_dir).fit(events, cutoff=CUTOFF) for name in RETRIEVERS}


def a_known_user(events: pl.DataFrame) -> str:
    before = events.filter(pl.col(S.EVENT_TIMESTAMP) < CUTOFF)
    return str(before[S.USER_ID].drop_nulls().mode().sort()[0])


# ---------------------------------------------------------------------------------------
# Contract: every retriever


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_answer_is_ids_and_scores_best_first(
    name: str, fitted: dict[str, Retriever], events: pl.DataFrame
) -> None:
    """A known user gets str ids, no duplicates, at most n_candidates, scores descending."""
    ids, scores = fitted[name].recommend(a_known_user(events), n_candidates=7)
    assert len(ids) > 0
    assert len(ids) == len(scores) <= 7
    assert all(isinstance(i, str) for i in ids)
    assert len(set(ids.tolist())) == len(ids)
    assert np.all(np.diff(scores) <= 1e-12)
    assert scores.dtype == np.float64


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_exclude_is_respected(
    name: str, fitted: dict[str, Retriever], events: pl.DataFrame
) -> None:
    user = a_known_user(events)
    first, _ = fitted[name].recommend(user, n_candidates=5)
    ids, _ = fitted[name].recommend(user, n_candidates=5, exclude=set(first[:3].tolist()))
    assert not set(first[:3].tolist()) & set(ids.tolist())


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_session_answer_and_unknown_basket_item_skipped(
    name: str, fitted: dict[str, Retriever]
) -> None:
    """A guest's basket with one unknown id: no error, the unknown id is counted."""
    retriever = fitted[name]
    before = retriever.n_unknown_items_
    ids, scores = retriever.recommend(None, session_items=["I000", "I004", "NOPE"], n_candidates=5)
    assert retriever.n_unknown_items_ == before + 1
    assert len(ids) == len(scores) <= 5
    if name in ("popularity", "covisitation", "als", "content", "session"):
        assert len(ids) > 0
    else:  # buy again needs a user history
        assert len(ids) == 0


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_unknown_user_is_not_an_error(name: str, fitted: dict[str, Retriever]) -> None:
    ids, scores = fitted[name].recommend("NEVER-SEEN", n_candidates=5)
    assert len(ids) == len(scores)
    assert fitted[name].known_user("NEVER-SEEN") is False


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_recommend_before_fit_raises(name: str, cache_dir: Path) -> None:
    with pytest.raises(NotFittedError, match="not fitted yet"):
        build(name, cache_dir).recommend("U001")


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_empty_training_window_is_rejected(
    name: str, events: pl.DataFrame, cache_dir: Path
) -> None:
    with pytest.raises(SchemaError, match="training window is empty"):
        build(name, cache_dir).fit(events, cutoff=START - timedelta(days=1))


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user_id": 17850}, r"user_id=17850 has type int"),
        ({"user_id": None, "session_items": ["I000", 22]}, r"session_items\[1\]=22 has type int"),
        ({"user_id": None, "session_items": "I000"}, r"one string"),
    ],
)
def test_ids_of_the_wrong_type_are_rejected(
    name: str, kwargs: dict[str, object], message: str, fitted: dict[str, Retriever]
) -> None:
    kwargs = dict(kwargs)
    user = kwargs.pop("user_id")
    with pytest.raises(BadRequestError, match=message):
        fitted[name].recommend(user, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_integer_id_column_is_rejected(name: str, events: pl.DataFrame, cache_dir: Path) -> None:
    bad = events.filter(pl.col(S.USER_ID).is_not_null()).with_columns(
        pl.col(S.USER_ID).str.slice(1).cast(pl.Int64)
    )
    with pytest.raises(SchemaError, match=r"\['user_id'\] has dtype Int64"):
        build(name, cache_dir).fit(bad, cutoff=CUTOFF)


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_nothing_after_the_cutoff_is_seen(name: str, events: pl.DataFrame, cache_dir: Path) -> None:
    """An item sold only after the cut-off is never proposed (no leakage)."""
    late = (
        events.filter(pl.col(S.USER_ID) == a_known_user(events))
        .head(3)
        .with_columns(
            pl.lit("LATE1").alias(S.ITEM_ID),
            pl.lit("LATE ITEM").alias("description"),
            pl.lit(CUTOFF + timedelta(days=1))
            .cast(pl.Datetime("us", "UTC"))
            .alias(S.EVENT_TIMESTAMP),
        )
    )
    retriever = build(name, cache_dir).fit(pl.concat([events, late]), cutoff=CUTOFF)
    for user in [a_known_user(events), None]:
        ids, _ = retriever.recommend(user, session_items=["I001"], n_candidates=100)
        assert "LATE1" not in set(ids.tolist())


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_fitting_twice_gives_the_same_answer(
    name: str, events: pl.DataFrame, cache_dir: Path, fitted: dict[str, Retriever]
) -> None:
    user = a_known_user(events)
    again = build(name, cache_dir).fit(events, cutoff=CUTOFF)
    a_ids, a_scores = fitted[name].recommend(user, n_candidates=10)
    b_ids, b_scores = again.recommend(user, n_candidates=10)
    assert a_ids.tolist() == b_ids.tolist()
    np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Particular cases


def test_popularity_baseline_counts_distinct_buyers_in_30_days(events: pl.DataFrame) -> None:
    baseline = PopularityRetriever(window_days=30, half_life_days=None, per_country=False)
    ids, scores = baseline.fit(events, cutoff=CUTOFF).recommend(None, n_candidates=3)
    window = events.filter(
        (pl.col(S.EVENT_TIMESTAMP) >= CUTOFF - timedelta(days=30))
        & (pl.col(S.EVENT_TIMESTAMP) < CUTOFF)
    ).with_columns(pl.coalesce(S.USER_ID, pl.lit("s:") + pl.col(S.SESSION_ID)).alias("b"))
    expected = (
        window.group_by(S.ITEM_ID)
        .agg(pl.col("b").n_unique().alias("n"))
        .sort("n", S.ITEM_ID, descending=[True, False])
        .head(3)
    )
    assert ids.tolist() == expected[S.ITEM_ID].to_list()
    np.testing.assert_allclose(scores, expected["n"].to_numpy() / expected["n"][0])


def test_popularity_per_country_ranks_the_country_first(events: pl.DataFrame) -> None:
    pop = PopularityRetriever(window_days=120, min_country_buyers=1).fit(events, cutoff=CUTOFF)
    france, _ = pop.recommend(None, country="France", n_candidates=40)
    overall, _ = pop.recommend(None, n_candidates=40)
    assert france.tolist() != overall.tolist()
    assert set(france.tolist()) <= set(overall.tolist()) | set(france.tolist())


def test_buy_again_nets_out_cancellations(events: pl.DataFrame) -> None:
    user = a_known_user(events)
    ids, _ = BuyAgainRetriever().fit(events, cutoff=CUTOFF).recommend(user, n_candidates=50)
    victim = str(ids[0])
    cancelled = cancel(events, user, victim, CUTOFF - timedelta(days=1))
    ids2, _ = BuyAgainRetriever().fit(cancelled, cutoff=CUTOFF).recommend(user, n_candidates=50)
    assert victim not in set(ids2.tolist())
    assert set(ids2.tolist()) == set(ids.tolist()) - {victim}


def test_buy_again_prefers_frequent_and_recent(events: pl.DataFrame) -> None:
    user = a_known_user(events)
    retriever = BuyAgainRetriever(half_life_days=1e9).fit(events, cutoff=CUTOFF)
    ids, scores = retriever.recommend(user, n_candidates=50)
    invoices = (
        events.filter((pl.col(S.USER_ID) == user) & (pl.col(S.EVENT_TIMESTAMP) < CUTOFF))
        .group_by(S.ITEM_ID)
        .agg(pl.col(S.SESSION_ID).n_unique().alias("n"))
    )
    counts = dict(invoices.iter_rows())
    # With no decay the score is the invoice count.
    np.testing.assert_allclose(scores, [counts[i] for i in ids], rtol=1e-6)


def test_covisitation_neighbourhood_is_bounded(events: pl.DataFrame) -> None:
    retriever = CoVisitationRetriever(n_neighbours=3).fit(events, cutoff=CUTOFF)
    per_row = np.diff(retriever.neighbours_.indptr)
    assert per_row.max() <= 3
    ids, _ = retriever.recommend(None, session_items=["I000"], n_candidates=10)
    assert len(ids) <= 3
    assert "I000" not in set(ids.tolist())


def test_covisitation_finds_items_of_the_same_group(events: pl.DataFrame) -> None:
    retriever = CoVisitationRetriever().fit(events, cutoff=CUTOFF)
    ids, _ = retriever.recommend(None, session_items=["I000", "I004"], n_candidates=3)
    # Items of group 0 are I000, I004, I008...: baskets are built within a group.
    assert all(int(i[1:]) % 4 == 0 for i in ids.tolist())


def test_als_rejects_a_matrix_in_the_other_orientation(events: pl.DataFrame) -> None:
    als = ALSRetriever(factors=4, iterations=2).fit(events, cutoff=CUTOFF)
    n_users, n_items = len(als.users_), len(als.items_)
    assert (n_users, n_items) == als.user_items_.shape
    with pytest.raises(SchemaError, match=r"(?s)expected orientation is users x items.*transposed"):
        als.fit_matrix(als.user_items_.T.tocsr())
    with pytest.raises(SchemaError, match="scipy sparse matrix"):
        als.fit_matrix(als.user_items_.toarray())
    # Another sparse format is accepted and converted.
    als.fit_matrix(sp.coo_matrix(als.user_items_))
    assert sp.isspmatrix_csr(als.user_items_)


def test_als_confidence_is_log_quantity_after_netting(events: pl.DataFrame) -> None:
    user = a_known_user(events)
    als = ALSRetriever(factors=4, iterations=2).fit(events, cutoff=CUTOFF)
    mine = events.filter((pl.col(S.USER_ID) == user) & (pl.col(S.EVENT_TIMESTAMP) < CUTOFF))
    item, quantity = mine.group_by(S.ITEM_ID).agg(pl.col(S.QUANTITY).sum()).sort(S.ITEM_ID).row(0)
    row, col = als.users_.get(user), als.items_.get(item)
    assert als.user_items_[row, col] == pytest.approx(np.log1p(quantity), rel=1e-6)


def test_als_new_user_gets_factors_from_their_items(events: pl.DataFrame) -> None:
    als = ALSRetriever(factors=8, iterations=5, random_state=3).fit(events, cutoff=CUTOFF)
    ids, _ = als.recommend("BRAND-NEW", session_items=["I001", "I005", "I009"], n_candidates=5)
    assert len(ids) == 5
    # Group 1 items (I001, I005, ...) should dominate a group-1 basket's neighbours.
    assert sum(int(i[1:]) % 4 == 1 for i in ids.tolist()) >= 3


def test_content_serves_items_with_no_sales(events: pl.DataFrame, cache_dir: Path) -> None:
    catalogue = items_table(extra={"NEW01": "RED CANDLE HOLDER DELUXE"})
    content = ContentRetriever(cache_dir=cache_dir).fit(events, cutoff=CUTOFF, items=catalogue)
    # Group 0 holds 10 sold items titled alike; the unsold one must rank among them.
    ids, _ = content.recommend(None, session_items=["I000", "I004", "I008"], n_candidates=12)
    assert "NEW01" in set(ids.tolist())
    content.add_items({"NEW02": "RED CANDLE HOLDER SMALL"})
    ids, _ = content.recommend(None, session_items=["I000", "I004"], n_candidates=13)
    assert "NEW02" in set(ids.tolist())


def test_embedding_cache_is_reused(events: pl.DataFrame, cache_dir: Path) -> None:
    from models.embeddings import TitleEncoder

    assert (cache_dir / "title_embeddings.npz").exists()
    vectors = TitleEncoder(cache_dir).encode(["RED CANDLE HOLDER NO 0"])
    assert vectors.shape == (1, 384)
    assert float(np.linalg.norm(vectors[0])) == pytest.approx(1.0, abs=1e-4)


def test_session_uses_the_last_basket_without_one(events: pl.DataFrame, cache_dir: Path) -> None:
    session = SessionRetriever(cache_dir=cache_dir).fit(events, cutoff=CUTOFF)
    user = a_known_user(events)
    ids, _ = session.recommend(user, n_candidates=5)
    assert len(ids) == 5
    assert session.recommend("NEVER-SEEN", n_candidates=5)[0].size == 0
