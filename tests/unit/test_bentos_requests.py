"""Request validation, the body-size middleware, pinning a model version, load-test parsing."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bentos.config import read_pinned_version, write_pinned_version
from bentos.loadgen import check_loopback, parse_server_timing
from bentos.schemas import RecommendRequest, SimilarItemsRequest
from feature_repo.config import Settings


def test_numeric_ids_are_read_as_strings() -> None:
    request = RecommendRequest.model_validate({"user_id": 12347, "session_items": [85123]})
    assert request.user_id == "12347"
    assert request.session_items == ["85123"]


def test_naive_as_of_is_utc() -> None:
    request = RecommendRequest.model_validate({"user_id": "1", "as_of": "2011-12-01T10:00:00"})
    assert request.as_of is not None
    assert request.as_of.tzinfo == UTC


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"user_id": "1", "k": 0}, "greater than or equal to 1"),
        ({"user_id": "1", "k": True}, "valid integer"),
        ({"session_items": ["a"] * 201}, "at most 200 items"),
        ({}, "one of user_id or session_items is required"),
        ({"user_id": "1", "exclude": ["a"]}, "Extra inputs are not permitted"),
    ],
)
def test_recommend_request_rules(body: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        RecommendRequest.model_validate(body)


def test_similar_items_request_needs_an_item() -> None:
    with pytest.raises(ValidationError, match="item_id"):
        SimilarItemsRequest.model_validate({"k": 3})


def _run_middleware(max_bytes: int, chunks: list[bytes], headers: list[tuple[bytes, bytes]]):  # type: ignore[no-untyped-def]
    from bentos.service import BodyLimitMiddleware

    seen: dict[str, Any] = {}
    sent: list[dict[str, Any]] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        message = await receive()
        seen["body"] = message["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive():  # type: ignore[no-untyped-def]
        return messages.pop(0)

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": headers}
    asyncio.run(BodyLimitMiddleware(app, max_bytes=max_bytes)(scope, receive, send))
    return seen, sent


def test_body_limit_passes_small_bodies_whole() -> None:
    seen, sent = _run_middleware(100, [b'{"user_id":', b' "1"}'], [])
    assert seen["body"] == b'{"user_id": "1"}'
    assert sent[0]["status"] == 200


@pytest.mark.parametrize("declared", [True, False])
def test_body_limit_answers_413(declared: bool) -> None:
    headers = [(b"content-length", b"150")] if declared else []
    seen, sent = _run_middleware(100, [b"x" * 60, b"x" * 90], headers)
    assert "body" not in seen  # the app never ran
    assert sent[0]["status"] == 413
    assert b"exceeds the limit of 100 bytes" in sent[1]["body"]


def test_pinning_and_unpinning_a_version(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert read_pinned_version(settings) is None
    path = write_pinned_version(settings, "shelfwise_recommender:abc", previous="x:1")
    assert json.loads(path.read_text()) == {
        "model_version": "shelfwise_recommender:abc",
        "previous": "x:1",
    }
    assert read_pinned_version(settings) == "shelfwise_recommender:abc"
    write_pinned_version(settings, None, previous="shelfwise_recommender:abc")
    assert read_pinned_version(settings) is None


def test_server_timing_parsing() -> None:
    assert parse_server_timing("a;dur=1.5, b;dur=2, c;desc=x") == {"a": 1.5, "b": 2.0}
    assert parse_server_timing(None) == {}


@pytest.mark.parametrize("url", ["http://10.0.0.1:3000", "http://example.com", "http://[::2]:1"])
def test_load_goes_to_loopback_only(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(url)
    check_loopback("http://127.0.0.1:3000/recommend")
