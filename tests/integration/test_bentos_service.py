"""The recommendation service over HTTP: a real ``bentoml serve`` on a loopback port, a real
redis-server with materialised features and a model trained on a slice of the real log."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from bentos.audit import read_audit
from feature_repo import schema as S
from tests.bentos_fixtures import ServingEnv, serving_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def _post(env: ServingEnv, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    assert env.service is not None
    if isinstance(body, (bytes, str)):
        return httpx.post(
            env.service.url + path,
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
            **kwargs,
        )
    return httpx.post(env.service.url + path, json=body, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def people(serving_env: ServingEnv) -> dict[str, Any]:  # noqa: F811
    """A known customer, one who bought recently, a guest basket and a known item."""
    import polars as pl

    from feature_repo.ingest import scan_events
    from models.api import load_recommender

    recommender = load_recommender(serving_env.model_version, bentoml_home=serving_env.bentoml_home)
    events = (
        scan_events(serving_env.settings.paths).filter(pl.col(S.EVENT_TYPE) == S.PURCHASE).collect()
    )
    buyers = (
        events.filter(pl.col(S.USER_ID).is_not_null())
        .group_by(S.USER_ID)
        .agg(pl.len().alias("n"), pl.col(S.EVENT_TIMESTAMP).max().alias("last"))
        .sort("n", S.USER_ID, descending=[True, False])
    )
    known = [u for u in buyers[S.USER_ID].to_list() if recommender.known_user(str(u))]
    item_counts = events.group_by(S.ITEM_ID).len().sort("len", S.ITEM_ID, descending=[True, False])
    titles = recommender.item_titles()
    items = [str(i) for i in item_counts[S.ITEM_ID].to_list() if str(i) in titles]
    return {"known": [str(u) for u in known[:20]], "items": items[:50], "titles": titles}


def test_health_and_readiness(serving_env: ServingEnv) -> None:  # noqa: F811
    assert serving_env.service is not None
    for path in ("/livez", "/readyz"):
        assert httpx.get(serving_env.service.url + path, timeout=10).status_code == 200


def test_recommend_for_a_known_customer(serving_env: ServingEnv, people: dict[str, Any]) -> None:  # noqa: F811
    """Personalised, ranked, explained, within k, and free of fees and excluded items."""
    user = people["known"][0]
    first = _post(serving_env, "/recommend", {"user_id": user, "k": 12}).json()
    exclude = [first["items"][0]["item_id"]]
    response = _post(
        serving_env, "/recommend", {"user_id": user, "k": 12, "exclude_items": exclude}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fallback"] is None
    assert body["model_version"] == serving_env.model_version
    assert body["is_guest"] is False
    items = body["items"]
    assert 1 <= len(items) <= 12
    assert [i["rank"] for i in items] == list(range(1, len(items) + 1))
    ids = [i["item_id"] for i in items]
    assert len(set(ids)) == len(ids)
    assert exclude[0] not in ids
    assert not any(i in S.NON_PRODUCT_CODES for i in ids)
    for item in items:
        assert item["sources"], item
        assert item["explanation"], item
        assert item["title"] == people["titles"].get(item["item_id"])
    assert "server-timing" in response.headers
    assert "rank;dur=" in response.headers["server-timing"]


def test_recommend_for_a_guest_basket(serving_env: ServingEnv, people: dict[str, Any]) -> None:  # noqa: F811
    basket = people["items"][:3]
    response = _post(
        serving_env, "/recommend", {"session_items": basket, "k": 5, "country": "France"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["is_guest"] is True
    assert body["fallback"] is None
    assert 1 <= len(body["items"]) <= 5
    assert not set(basket) & {i["item_id"] for i in body["items"]}


def test_unknown_user_gets_the_flagged_cold_start_answer(serving_env: ServingEnv) -> None:  # noqa: F811
    response = _post(serving_env, "/recommend", {"user_id": "no-such-customer", "k": 4})
    assert response.status_code == 200
    body = response.json()
    assert body["fallback"] == "unknown_user"
    assert body["known_user"] is False
    assert len(body["items"]) == 4
    assert all(i["sources"] == ["popularity"] for i in body["items"])


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"user_id": "12347", "k": 0}, "k", "greater than or equal to 1"),
        ({"user_id": "12347", "k": 101}, "k", "less than or equal to 100"),
        ({"user_id": "12347", "k": "ten"}, "k", "valid integer"),
        ({"user_id": "12347", "k": 2.5}, "k", "valid integer"),
        ({"k": 5}, None, "one of user_id or session_items is required"),
        ({"session_items": []}, None, "one of user_id or session_items is required"),
        ({"session_items": "85123A"}, "session_items", "valid array"),
        ({"user_id": "12347", "colour": "red"}, "colour", "Extra inputs"),
        ({"user_id": ""}, "user_id", "at least 1 character"),
        ({"user_id": "12347", "as_of": "yesterday"}, "as_of", "datetime"),
    ],
)
def test_bad_requests_name_the_field_and_the_rule(
    serving_env: ServingEnv,  # noqa: F811
    body: dict[str, Any],
    field: str | None,
    rule: str,
) -> None:
    response = _post(serving_env, "/recommend", body)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert any(rule in d["msg"] for d in detail), detail
    if field is not None:
        assert any(field in d["loc"] for d in detail), detail


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"user"', b"\xff\xfe"])
def test_malformed_bodies_are_4xx(serving_env: ServingEnv, raw: bytes) -> None:  # noqa: F811
    response = _post(serving_env, "/recommend", raw)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]


def test_a_body_over_the_limit_is_413(serving_env: ServingEnv) -> None:  # noqa: F811
    body = {"user_id": "12347", "exclude_items": [f"{i:06d}" for i in range(900)]}
    response = _post(serving_env, "/recommend", body)
    assert response.status_code == 413
    assert "exceeds the limit of 4096 bytes" in response.json()["error"]

    # The same without Content-Length (chunked upload).
    def chunks():  # type: ignore[no-untyped-def]
        data = json.dumps(body).encode()
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    assert serving_env.service is not None
    response = httpx.post(
        serving_env.service.url + "/recommend",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413


def test_similar_items(serving_env: ServingEnv, people: dict[str, Any]) -> None:  # noqa: F811
    item = people["items"][0]
    response = _post(serving_env, "/similar_items", {"item_id": item, "k": 6})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["item_id"] == item
    assert 1 <= len(body["items"]) <= 6
    assert item not in {i["item_id"] for i in body["items"]}
    assert {s for i in body["items"] for s in i["sources"]} <= {"covisitation", "content"}

    missing = _post(serving_env, "/similar_items", {"item_id": "NO-SUCH-ITEM", "k": 3})
    assert missing.status_code == 404
    assert missing.json()["detail"][0]["loc"] == ["item_id"]
    assert _post(serving_env, "/similar_items", {"item_id": item, "k": 0}).status_code == 400


def test_a_logged_request_traces_to_its_model_version(
    serving_env: ServingEnv,  # noqa: F811
    people: dict[str, Any],
) -> None:
    """The audit line of a replayed request sits in its original day's file."""
    body = {"user_id": people["known"][1], "k": 3, "as_of": "2010-12-08T10:30:00"}
    answer = _post(serving_env, "/recommend", body).json()
    path = serving_env.settings.paths.audit_log / "2010-12-08.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    mine = [r for r in records if r[S.AUDIT_REQUEST_ID] == answer["request_id"]]
    assert len(mine) == 1
    record = mine[0]
    assert record[S.AUDIT_MODEL_VERSION] == answer["model_version"] == serving_env.model_version
    assert record[S.AUDIT_TIMESTAMP] == "2010-12-08T10:30:00+00:00"
    assert record[S.AUDIT_ITEMS] == [i["item_id"] for i in answer["items"]]
    assert record[S.AUDIT_SOURCES] == [i["sources"] for i in answer["items"]]
    assert record[S.AUDIT_USER] not in (None, people["known"][1])
    assert record[S.AUDIT_FALLBACK] is None
    assert record[S.AUDIT_LATENCY_MS] > 0


def test_redis_slow_then_down_then_back(serving_env: ServingEnv, people: dict[str, Any]) -> None:  # noqa: F811
    """Slow or stopped Redis: flagged fallbacks within the budget; then personalised again."""
    import redis

    user = people["known"][2]
    body = {"user_id": user, "k": 5}
    assert _post(serving_env, "/recommend", body).json()["fallback"] is None

    # Slow: Redis stops answering clients for far longer than the 250 ms budget.
    client = redis.Redis.from_url(serving_env.redis.url)
    client.execute_command("CLIENT", "PAUSE", "8000", "ALL")
    try:
        started = time.perf_counter()
        slow = _post(serving_env, "/recommend", body)
        elapsed = time.perf_counter() - started
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
    assert slow.status_code == 200
    assert slow.json()["fallback"] == "redis_timeout"
    assert len(slow.json()["items"]) == 5
    assert elapsed < 8.0  # answered while Redis was still paused
    time.sleep(0.5)  # past the retry delay

    # Down: the server process stops (its data saved to disk first).
    serving_env.redis.stop()
    try:
        down = _post(serving_env, "/recommend", body)
        assert down.status_code == 200
        assert down.json()["fallback"] == "redis_unavailable"
        assert len(down.json()["items"]) == 5
    finally:
        serving_env.redis.start()

    # Back: personalised again, without restarting the service.
    deadline = time.monotonic() + 10
    fallback: Any = "not asked"
    while time.monotonic() < deadline:
        fallback = _post(serving_env, "/recommend", body).json()["fallback"]
        if fallback is None:
            break
        time.sleep(0.2)
    assert fallback is None

    assert serving_env.service is not None
    metrics = httpx.get(serving_env.service.url + "/metrics", timeout=10).text
    assert 'shelfwise_fallback_total{reason="redis_unavailable"}' in metrics
    assert 'shelfwise_fallback_total{reason="redis_timeout"}' in metrics
    assert 'shelfwise_stage_seconds_bucket{endpoint="recommend"' in metrics
    assert "Redis failed" in serving_env.service_log()


def test_opt_out_survives_restarts_of_service_and_redis(
    serving_env: ServingEnv,  # noqa: F811
    people: dict[str, Any],
) -> None:
    user = people["known"][3]
    body = {"user_id": user, "k": 5}
    assert _post(serving_env, "/recommend", body).json()["fallback"] is None
    assert _post(serving_env, "/opt_out", {"user_id": user}).json() == {
        "user_id": user,
        "opted_out": True,
    }
    assert _post(serving_env, "/recommend", body).json()["fallback"] == "opted_out"

    serving_env.stop_service()
    serving_env.redis.stop()
    serving_env.redis.start()
    serving_env.start_service()

    assert _post(serving_env, "/recommend", body).json()["fallback"] == "opted_out"
    assert _post(serving_env, "/opt_in", {"user_id": user}).json()["opted_out"] is False
    assert _post(serving_env, "/recommend", body).json()["fallback"] is None
    records = read_audit(serving_env.settings.paths.audit_log)
    assert any(r[S.AUDIT_FALLBACK] == "opted_out" for r in records)


def test_a_missing_model_stops_start_up_with_a_clear_message(
    serving_env: ServingEnv,  # noqa: F811
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    import subprocess
    import sys

    from bentos.process import TELEMETRY_OFF

    env = {
        **serving_env.service_env(BENTOML_HOME=str(tmp_path / "empty")),
        **TELEMETRY_OFF,
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "bentos", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "no trained model" in result.stderr


def test_direct_scoring_equals_recommender_rank(
    serving_env: ServingEnv,  # noqa: F811
    people: dict[str, Any],
) -> None:
    """The service's own scoring gives Recommender.rank's order, scores and contributions."""
    import numpy as np

    from bentos.online import FeastRedisReader, as_arrays, make_client, view_layouts
    from bentos.scoring import FastScorer, rank_order
    from feature_repo.store import get_store
    from models.api import load_recommender

    recommender = load_recommender(serving_env.model_version, bentoml_home=serving_env.bentoml_home)
    scorer = FastScorer(recommender)
    store = get_store(serving_env.settings, use_redis=True)
    reader = FeastRedisReader(
        make_client(serving_env.settings.redis_url, budget_ms=2000),
        project=serving_env.settings.project,
        layouts=view_layouts(store, recommender.feature_service),
    )
    requests = [
        {"user_id": people["known"][4]},
        {"user_id": people["known"][5], "country": "Germany"},
        {"user_id": None, "session_items": tuple(people["items"][5:8])},
    ]
    for request in requests:
        candidates = recommender.candidates(n_candidates=120, **request)  # type: ignore[arg-type]
        ids = [str(i) for i in candidates.item_ids]
        user_id = request["user_id"]
        entities = {S.ITEM_VIEW: ids, **({S.USER_VIEW: [user_id]} if user_id else {})}
        columns = reader.read(entities)
        user_features = {k: v[0] for k, v in columns[S.USER_VIEW].items()} if user_id else {}
        item_features = as_arrays(columns[S.ITEM_VIEW])
        ranked, scores, contributions = recommender.rank(
            candidates, user_id=user_id, user_features=user_features, item_features=item_features
        )
        matrix = scorer.matrix(
            candidates.features, user_features=user_features, item_features=item_features
        )
        raw = scorer.scores(matrix)
        order = rank_order(ids, raw)
        expected = dict(zip((str(i) for i in ranked), scores, strict=True))
        np.testing.assert_allclose(raw, [expected[i] for i in ids], rtol=1e-5, atol=1e-5)
        # Same order wherever the scores are not tied within float32 rounding.
        assert ids[order[0]] == str(ranked[0]) or abs(scores[0] - scores[1]) < 1e-5
        top5 = [ids.index(str(i)) for i in ranked[:5]]
        mine = scorer.contributions(matrix[top5], top=3)
        for got, expected in zip(mine, contributions[:5], strict=True):
            assert [name for name, _ in got] == [name for name, _ in expected]
            np.testing.assert_allclose(
                [v for _, v in got], [v for _, v in expected], rtol=1e-4, atol=1e-5
            )
