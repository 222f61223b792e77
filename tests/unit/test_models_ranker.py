"""The ranker's input rules: bounded grades, sorted queries, groups without a positive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.errors import NotFittedError, SchemaError
from models.ranker import MAX_GRADE, XGBRankerModel, check_labels, grade_labels, prepare_queries


def make_queries(
    n_queries: int = 40, per_query: int = 12, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Queries where the label grows with feature ``signal`` (plus noise and a category)."""
    rng = np.random.default_rng(seed)
    n = n_queries * per_query
    signal = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "signal": signal,
            "noise": rng.normal(size=n),
            "user_country": rng.choice(["United Kingdom", "France"], size=n),
        }
    )
    labels = np.clip(np.round(signal + rng.normal(scale=0.3, size=n)), 0, MAX_GRADE).astype(int)
    qid = np.repeat(np.arange(n_queries), per_query)
    return frame, labels, qid


def test_grade_labels_are_bounded() -> None:
    np.testing.assert_array_equal(grade_labels([0, 1, 2, 3, 7, 250]), [0, 1, 2, 3, 3, 3])
    with pytest.raises(SchemaError, match=r"purchase count -1.0; the rule is a finite count"):
        grade_labels([1, -1])


def test_labels_above_31_are_rejected() -> None:
    with pytest.raises(SchemaError, match=r"label 40 at row 2 breaks the rule.*0\.\.31"):
        check_labels(np.asarray([0, 3, 40]))
    with pytest.raises(SchemaError, match=r"label 1.5 at row 0"):
        check_labels(np.asarray([1.5, 0.0]))


def test_queries_out_of_order_are_sorted_first() -> None:
    frame, labels, qid = make_queries()
    # Whole queries arrive in a shuffled order (rows of one query keep their order).
    query_order = np.random.default_rng(1).permutation(qid.max() + 1)
    order = np.concatenate([np.flatnonzero(qid == q) for q in query_order])
    assert np.any(np.diff(qid[order]) < 0)
    shuffled = prepare_queries(frame.iloc[order].reset_index(drop=True), labels[order], qid[order])
    assert np.all(np.diff(shuffled[2]) >= 0)
    ranker_sorted = XGBRankerModel(n_estimators=20, categorical=["user_country"]).fit(
        frame, labels, qid
    )
    ranker_shuffled = XGBRankerModel(n_estimators=20, categorical=["user_country"]).fit(
        frame.iloc[order].reset_index(drop=True), labels[order], qid[order]
    )
    np.testing.assert_array_equal(ranker_sorted.predict(frame), ranker_shuffled.predict(frame))


def test_groups_without_a_positive_are_left_out_and_counted() -> None:
    frame, labels, qid = make_queries()
    labels = labels.copy()
    labels[qid < 5] = 0
    ranker = XGBRankerModel(n_estimators=10).fit(frame, labels, qid)
    assert ranker.n_groups_dropped_ == 5


def test_all_zero_groups_are_rejected() -> None:
    frame, labels, qid = make_queries(n_queries=3)
    with pytest.raises(SchemaError, match="every query has only zero labels"):
        XGBRankerModel(n_estimators=5).fit(frame, np.zeros_like(labels), qid)


def test_ranker_learns_the_signal_and_explains_it() -> None:
    frame, labels, qid = make_queries(n_queries=60)
    valid = make_queries(n_queries=20, seed=5)
    ranker = XGBRankerModel(n_estimators=60, categorical=["user_country"], random_state=3).fit(
        frame, labels, qid, eval_set=valid
    )
    scores = ranker.predict(valid[0])
    assert np.corrcoef(scores, valid[0]["signal"])[0, 1] > 0.8
    contribs = ranker.contributions(valid[0])
    assert contribs.shape == (len(valid[0]), 4)
    np.testing.assert_allclose(contribs.sum(axis=1), scores, rtol=1e-4, atol=1e-4)
    top = np.abs(contribs[:, :-1]).mean(axis=0).argmax()
    assert ranker.feature_names_[top] == "signal"


def test_unseen_category_and_missing_column() -> None:
    frame, labels, qid = make_queries()
    ranker = XGBRankerModel(n_estimators=10, categorical=["user_country"]).fit(frame, labels, qid)
    odd = frame.head(3).assign(user_country="Atlantis")
    assert np.all(np.isfinite(ranker.predict(odd)))
    with pytest.raises(SchemaError, match=r"features lack \['noise'\]"):
        ranker.predict(frame.drop(columns=["noise"]))


def test_predict_before_fit_raises() -> None:
    with pytest.raises(NotFittedError, match="not fitted yet"):
        XGBRankerModel().predict(pd.DataFrame({"a": [1.0]}))


def test_same_seed_same_model() -> None:
    frame, labels, qid = make_queries()
    a = XGBRankerModel(n_estimators=30, random_state=9).fit(frame, labels, qid).predict(frame)
    b = XGBRankerModel(n_estimators=30, random_state=9).fit(frame, labels, qid).predict(frame)
    np.testing.assert_array_equal(a, b)
