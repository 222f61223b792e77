"""Business rules, MMR diversity, the audit log and the opt-out journal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bentos.audit import AuditLog, audit_path, load_salt, pseudonymise, read_audit
from bentos.optout import OptOutStore
from bentos.rules import PurchaseIndex, apply_rules, is_non_product, mmr
from feature_repo import schema as S

T0 = datetime(2011, 11, 1, tzinfo=UTC)


def _index() -> PurchaseIndex:
    def ts(days: float) -> int:
        return int((T0 + timedelta(days=days)).timestamp())

    return PurchaseIndex(
        user_items={
            "u1": (
                np.array(["a1", "b1", "c1"], dtype=object),
                np.array([ts(-20), ts(-3), ts(+1)]),  # c1 is bought after the request
            )
        },
        item_sales={
            "a1": np.array([ts(-90), ts(-20)]),
            "b1": np.array([ts(-3)]),
            "c1": np.array([ts(-200), ts(+1)]),  # unsold for 200 days before T0
            "d1": np.array([ts(-1)]),
        },
        data_end=T0,
    )


@pytest.mark.parametrize("code", ["POST", "DOT", "gift_0001_20", "BANK CHARGES", " m "])
def test_non_product_codes_are_recognised(code: str) -> None:
    assert is_non_product(code)


@pytest.mark.parametrize("code", ["85123A", "22423", "POSTER1"])
def test_products_are_not_non_product(code: str) -> None:
    assert not is_non_product(code)


def test_recent_items_see_only_the_past_window() -> None:
    """A purchase after the request time is never used, one before the window neither."""
    index = _index()
    assert index.recent_items("u1", as_of=T0, days=7) == {"b1"}
    assert index.recent_items("u1", as_of=T0, days=30) == {"a1", "b1"}
    assert index.recent_items("u1", as_of=T0 + timedelta(days=2), days=7) == {"b1", "c1"}
    assert index.recent_items("nobody", as_of=T0, days=7) == set()


def test_rules_remove_each_kind_and_count_it() -> None:
    items = ["a1", "b1", "c1", "d1", "POST", "e1"]
    outcome = apply_rules(
        items,
        index=_index(),
        user_id="u1",
        as_of=T0,
        recent_days=7,
        unsold_days=60,
        exclude=["d1"],
    )
    kept = [i for i, k in zip(items, outcome.keep, strict=True) if k]
    # b1 bought 3 days ago, c1 unsold for 200 days, d1 excluded, POST a fee; e1 is unknown.
    assert kept == ["a1", "e1"]
    assert outcome.removed == {
        "non_product": 1,
        "excluded": 1,
        "bought_recently": 1,
        "unavailable": 1,
    }


def test_empty_index_disables_the_time_rules() -> None:
    outcome = apply_rules(
        ["a1", "b1"], index=PurchaseIndex.empty(), user_id="u1", as_of=T0,
        recent_days=7, unsold_days=1,
    )  # fmt: skip
    assert outcome.keep.tolist() == [True, True]


def test_mmr_with_full_weight_is_the_score_order() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    emb = np.eye(4)
    assert mmr(scores, emb, 3, weight=1.0).tolist() == [1, 3, 2]
    assert mmr(scores, None, 10, weight=0.5).tolist() == [1, 3, 2, 0]


def test_mmr_skips_a_near_duplicate_title() -> None:
    """Item 1 duplicates item 0's title: with diversity on, item 2 comes second."""
    scores = np.array([1.0, 0.95, 0.8])
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert mmr(scores, emb, 2, weight=1.0).tolist() == [0, 1]
    assert mmr(scores, emb, 2, weight=0.5).tolist() == [0, 2]
    assert mmr(scores, emb, 0, weight=0.7).tolist() == []


def test_audit_log_appends_schema_keys_to_the_request_day(tmp_path: Path) -> None:
    salt = load_salt(tmp_path)
    assert load_salt(tmp_path) == salt  # kept on disk, the same on the next start
    log = AuditLog(tmp_path / "audit", salt=salt)
    when = datetime(2011, 12, 5, 23, 59, tzinfo=UTC)
    log.record(
        request_id="r1", when=when, endpoint="recommend", user_id="12347",
        model_version="v1", k=2, items=["a1", "b1"], scores=[0.5, 0.25],
        sources=[["als"], ["popularity", "session"]], fallback=None, latency_ms=3.2,
    )  # fmt: skip
    log.record(
        request_id="r2", when=when + timedelta(minutes=2), endpoint="recommend",
        user_id=None, model_version="v1", k=1, items=[], scores=[], sources=[],
        fallback="redis_unavailable", latency_ms=1.0,
    )  # fmt: skip
    day1 = audit_path(tmp_path / "audit", when)
    assert day1.name == "2011-12-05.jsonl"
    first = json.loads(day1.read_text().splitlines()[0])
    assert set(first) == {
        S.AUDIT_REQUEST_ID, S.AUDIT_TIMESTAMP, S.AUDIT_USER, S.AUDIT_IS_GUEST,
        S.AUDIT_MODEL_VERSION, S.AUDIT_ITEMS, S.AUDIT_SCORES, S.AUDIT_SOURCES,
        S.AUDIT_FALLBACK, S.AUDIT_LATENCY_MS, S.AUDIT_K, S.AUDIT_ENDPOINT,
    }  # fmt: skip
    assert first[S.AUDIT_USER] == pseudonymise("12347", salt)
    assert "12347" not in day1.read_text()
    records = read_audit(tmp_path / "audit")
    assert [r[S.AUDIT_REQUEST_ID] for r in records] == ["r1", "r2"]
    assert records[1][S.AUDIT_TIMESTAMP].startswith("2011-12-06T00:01")
    assert records[1][S.AUDIT_IS_GUEST] is True


def test_opt_out_is_durable_and_shared(tmp_path: Path) -> None:
    """A second store on the same file (another worker, or after a restart) agrees."""
    path = tmp_path / "opt_out.jsonl"
    first = OptOutStore(path)
    second = OptOutStore(path)
    first.set("12347", opted_out=True)
    assert second.is_opted_out("12347")
    assert not second.is_opted_out("12348")
    second.set("12347", opted_out=False)
    assert not first.is_opted_out("12347")
    first.set("12348", opted_out=True)
    assert OptOutStore(path).is_opted_out("12348")
    assert not OptOutStore(path).is_opted_out(None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"double_val": 3.25}, {"double_val": -0.0}, {"double_val": 1e300},
        {"float_val": 0.1}, {"int64_val": 0}, {"int64_val": -5}, {"int64_val": 2**62},
        {"int32_val": -7}, {"int32_val": 300}, {"bool_val": True}, {"bool_val": False},
        {"string_val": ""}, {"string_val": "United Kingdom"}, {"string_val": "Ünïcödé"},
        {"int64_list_val": {"val": [1, 2]}}, {"unix_timestamp_val": 1_300_000_000},
        {"null_val": 0},
    ],
)  # fmt: skip
def test_value_decoding_matches_protobuf(kwargs: dict[str, object]) -> None:
    """The service's own decoding of Feast values equals protobuf's, type by type."""
    from feast.protos.feast.types.Value_pb2 import Value

    from bentos.online import _decode_value, _parse_value

    raw = Value(**kwargs).SerializeToString()  # type: ignore[arg-type]
    expected = _parse_value(raw) if raw else None
    assert _decode_value(raw) == expected
    assert _decode_value(raw) == expected  # from the memo
    assert type(_decode_value(raw)) is type(expected)
