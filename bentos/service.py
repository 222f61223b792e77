"""The Shelfwise recommendation service (BentoML).

Start it with ``python -m bentos serve`` (or ``bentoml serve bentos.service:Shelfwise``).
Endpoints: ``POST /recommend``, ``POST /similar_items``, ``POST /opt_out``, ``POST /opt_in``;
BentoML adds ``GET /livez``, ``GET /readyz`` and ``GET /metrics`` (Prometheus, with this
service's per-stage timings, fallbacks and Redis failures).

Models and online-feature layout are loaded once, when a worker starts: a missing model
stops the start-up with a message saying which version was looked for and how to train it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import bentoml

import feature_repo  # noqa: F401  (switches the libraries' telemetry off first)
from bentos.config import load_serve_config
from bentos.engine import STAGES, EngineHooks, RecommendationEngine
from bentos.schemas import (
    OptOutRequest,
    OptOutResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarItemsRequest,
    SimilarItemsResponse,
)
from feature_repo.errors import ShelfwiseError, StoreUnavailableError

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Stage timings are short: buckets from 0.1 ms to 2.5 s.
_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

STAGE_SECONDS = bentoml.metrics.Histogram(
    name="shelfwise_stage_seconds",
    documentation="Time spent in each stage of a request",
    labelnames=["endpoint", "stage"],
    buckets=_BUCKETS,
)
FALLBACKS = bentoml.metrics.Counter(
    name="shelfwise_fallback_total",
    documentation="Answers that are not the personalised one, by reason",
    labelnames=["reason"],
)
REDIS_EVENTS = bentoml.metrics.Counter(
    name="shelfwise_redis_state_changes_total",
    documentation="Redis going down (state=down) or coming back (state=up)",
    labelnames=["state"],
)


def _observe_stages(endpoint: str, seconds: Mapping[str, float]) -> None:
    for stage, value in seconds.items():
        STAGE_SECONDS.labels(endpoint=endpoint, stage=stage).observe(value)


def _error_body(status: int, message: str, *, field: str | None, rule: str) -> bytes:
    detail = [{"loc": [field] if field else [], "msg": message, "type": rule}]
    return json.dumps({"error": message, "detail": detail}).encode()


class BodyLimitMiddleware:
    """Answers 413 to a request whose body exceeds ``max_bytes``, before the app reads it.

    The body is buffered (it is small by construction) and handed to the app in one piece,
    so a chunked upload without ``Content-Length`` is caught too.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send, size: str) -> None:
        body = _error_body(
            413,
            f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes "
            "(SHELFWISE_SERVE_MAX_BODY_BYTES)",
            field=None,
            rule="body_too_large",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send, length.decode())
            return

        # Read the body up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._reject(send, f"more than {self.max_bytes}")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        buffered = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([buffered], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _unexpected(endpoint: str) -> Any:
    """A bug must not surface as a bare 500: log it, answer 503 with a request to retry."""
    logger.exception("unexpected error in %s", endpoint)
    return _json_error(
        StoreUnavailableError(f"{endpoint} failed unexpectedly; the error is logged, retry later")
    )


def _json_error(exc: ShelfwiseError) -> Any:
    from starlette.responses import Response

    field = getattr(exc, "field", None)
    return Response(
        _error_body(exc.http_status, str(exc), field=field, rule=type(exc).__name__),
        status_code=exc.http_status,
        media_type="application/json",
    )


def _configure_logging() -> None:
    """Send the project's own loggers to stderr: BentoML configures only its own."""
    for name in ("bentos", "feature_repo", "models"):
        package_logger = logging.getLogger(name)
        if package_logger.handlers:
            continue
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s [%(levelname)s] [%(name)s] %(message)s")
        )
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)
        package_logger.propagate = False


_CONFIG = load_serve_config()


@bentoml.service(
    name="shelfwise",
    workers=_CONFIG.workers,
    traffic={"timeout": 30},
    http={"host": "127.0.0.1"},
    metrics={"enabled": True},
    logging={"access": {"enabled": False}},
)
class Shelfwise:
    """Recommendations for customers and guest baskets, from the Redis online store."""

    def __init__(self) -> None:
        _configure_logging()
        from feature_repo.store import get_store
        from models.api import load_recommender

        config = load_serve_config()
        version = config.model_version
        try:
            recommender = load_recommender(version, bentoml_home=os.environ.get("BENTOML_HOME"))
        except Exception as exc:
            message = (
                f"cannot load model version {version or 'latest'!r} from the BentoML model "
                f"store at {os.environ.get('BENTOML_HOME', '~/bentoml')}: {exc}\n"
                "Hint: train one with `make train`, or list them with `python -m bentos versions`."
            )
            logger.error(message)
            raise RuntimeError(message) from exc
        # Only the registry is read here; the feature values come through the fast reader.
        store = get_store(config.settings, use_redis=True)
        self.engine = RecommendationEngine(
            config,
            recommender,
            store,
            hooks=EngineHooks(
                on_stages=_observe_stages,
                on_fallback=lambda reason: FALLBACKS.labels(reason=reason).inc(),
                on_redis=lambda up: REDIS_EVENTS.labels(state="up" if up else "down").inc(),
            ),
        )
        logger.info(
            "serving model %s (feature service %s)",
            recommender.model_version,
            recommender.feature_service,
        )

    def __is_ready__(self) -> bool:
        return self.engine is not None

    @bentoml.api(route="/recommend")
    def recommend(self, request: RecommendRequest, /, ctx: bentoml.Context) -> RecommendResponse:
        """Up to ``k`` items for a customer, a guest basket, or both.

        The ``Server-Timing`` header carries each stage's milliseconds.
        """
        try:
            response, seconds = self.engine.recommend(request)
        except ShelfwiseError as exc:
            ctx.response.status_code = exc.http_status
            return _json_error(exc)  # type: ignore[no-any-return]
        ctx.response.metadata["server-timing"] = ", ".join(
            f"{stage};dur={value * 1000.0:.3f}" for stage, value in seconds.items()
        )
        return response

    @bentoml.api(route="/similar_items")
    def similar_items(
        self, request: SimilarItemsRequest, /, ctx: bentoml.Context
    ) -> SimilarItemsResponse:
        """Items bought together with ``item_id``, and items with similar titles."""
        try:
            return self.engine.similar_items(request)
        except ShelfwiseError as exc:
            ctx.response.status_code = exc.http_status
            return _json_error(exc)  # type: ignore[no-any-return]
        except Exception:
            ctx.response.status_code = StoreUnavailableError.http_status
            return _unexpected("similar_items")  # type: ignore[no-any-return]

    def _set_opt_out(self, user_id: str, ctx: bentoml.Context, *, opted_out: bool) -> Any:
        try:
            return self.engine.set_opt_out(user_id, opted_out=opted_out)
        except OSError:
            ctx.response.status_code = StoreUnavailableError.http_status
            return _unexpected("opt_out" if opted_out else "opt_in")

    @bentoml.api(route="/opt_out")
    def opt_out(self, request: OptOutRequest, /, ctx: bentoml.Context) -> OptOutResponse:
        """From now on, ``user_id`` gets non-personalised answers (kept on disk)."""
        return self._set_opt_out(request.user_id, ctx, opted_out=True)  # type: ignore[no-any-return]

    @bentoml.api(route="/opt_in")
    def opt_in(self, request: OptOutRequest, /, ctx: bentoml.Context) -> OptOutResponse:
        """Undo an opt-out: personalised answers again."""
        return self._set_opt_out(request.user_id, ctx, opted_out=False)  # type: ignore[no-any-return]


Shelfwise.add_asgi_middleware(BodyLimitMiddleware, max_bytes=_CONFIG.max_body_bytes)  # type: ignore[attr-defined]

__all__ = ["STAGES", "BodyLimitMiddleware", "Shelfwise"]
