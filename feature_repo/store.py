"""Open, apply and materialize the Shelfwise feature store for given settings.

The configuration always comes from ``feature_repo/feature_store.yaml``: its ``${VAR}``
placeholders are filled from :class:`~feature_repo.config.Settings`, exactly as
``eval "$(python -m feature_repo env)"`` fills them for the ``feast`` command line. When
Redis is not reachable the online store falls back to Feast's embedded SQLite store, with
a warning, so the demo still runs.
"""

from __future__ import annotations

import logging
import os
import string
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import yaml

from feature_repo import schema as S
from feature_repo.config import FEATURE_REPO_DIR, Settings
from feature_repo.errors import ConfigError

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

logger = logging.getLogger(__name__)

FEATURE_STORE_YAML = FEATURE_REPO_DIR / "feature_store.yaml"


def redis_reachable(settings: Settings, *, timeout_s: float = 0.5) -> bool:
    """True when a Redis server answers PING at ``settings.redis_url``."""
    import redis

    host, port, db = settings.redis_host_port
    try:
        client = redis.Redis(
            host=host, port=port, db=db, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def online_store_yaml(settings: Settings, *, use_redis: bool | None = None) -> str:
    """The ``online_store`` block as one-line YAML: Redis, or SQLite when it is down."""
    if use_redis is None:
        use_redis = redis_reachable(settings)
    if use_redis:
        host, port, db, password = settings.redis_parts
        secret = f",password={password}" if password else ""
        return f'{{type: redis, connection_string: "{host}:{port},db={db}{secret}"}}'
    logger.warning(
        "Redis at %s is not reachable: using Feast's SQLite online store at %s instead",
        settings.redacted_redis_url,
        settings.paths.sqlite_online,
    )
    return f'{{type: sqlite, path: "{settings.paths.sqlite_online}"}}'


def feast_env(settings: Settings, *, use_redis: bool | None = None) -> dict[str, str]:
    """Every variable ``feature_store.yaml`` names, from ``settings``."""
    return {
        "SHELFWISE_FEAST_PROJECT": settings.project,
        "SHELFWISE_FEAST_REGISTRY": str(settings.paths.registry),
        "SHELFWISE_FEAST_ONLINE_STORE": online_store_yaml(settings, use_redis=use_redis),
        "SHELFWISE_DATA_DIR": str(settings.data_dir),
        "FEAST_USAGE": "False",
    }


def repo_config(settings: Settings, *, use_redis: bool | None = None) -> RepoConfig:
    """Feast's ``RepoConfig`` from ``feature_store.yaml`` with ``settings`` filled in."""
    from feast.repo_config import RepoConfig

    env = feast_env(settings, use_redis=use_redis)
    # Comments may mention ${VAR} too; only the settings lines are filled.
    text = "\n".join(
        line
        for line in FEATURE_STORE_YAML.read_text().splitlines()
        if not line.lstrip().startswith("#")
    )
    try:
        filled = string.Template(text).substitute(env)
    except KeyError as exc:
        raise ConfigError(
            f"{FEATURE_STORE_YAML} names ${{{exc.args[0]}}}, which no setting fills."
        ) from exc
    raw = yaml.safe_load(filled)
    config = RepoConfig(**raw)
    config.repo_path = FEATURE_REPO_DIR
    return config


def get_store(settings: Settings, *, use_redis: bool | None = None) -> FeatureStore:
    """A ``FeatureStore`` on ``settings``' registry and online store."""
    from feast import FeatureStore

    settings.paths.feast.mkdir(parents=True, exist_ok=True)
    return FeatureStore(
        repo_path=str(FEATURE_REPO_DIR), config=repo_config(settings, use_redis=use_redis)
    )


def apply(settings: Settings, *, store: FeatureStore | None = None) -> FeatureStore:
    """Register every definition (what ``feast apply`` does) for ``settings``."""
    from feature_repo.definitions import build_definitions

    store = store or get_store(settings)
    objects = list(build_definitions(settings).values())
    started = time.perf_counter()
    store.apply(objects)
    logger.info(
        "apply: %d object(s) registered in project %r in %.1f s",
        len(objects),
        settings.project,
        time.perf_counter() - started,
    )
    return store


def materialize(
    settings: Settings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    views: list[str] | None = None,
    store: FeatureStore | None = None,
    stock: bool = False,
) -> FeatureStore:
    """Load the latest feature values in ``[start, end)`` into the online store.

    By default ``end`` is just after the last snapshot in the feature tables and ``start``
    one view ``ttl`` before it, which is the latest snapshot of every entity still in its
    ``ttl``. On Redis the values are written by :mod:`feature_repo.online_writer` (same
    layout, several times faster); ``stock=True`` or the SQLite fallback uses Feast's
    own ``materialize``.
    """
    import polars as pl

    store = store or get_store(settings)
    views = views or [S.USER_VIEW, S.ITEM_VIEW, S.SESSION_VIEW]
    missing = [v for v in views if not settings.paths.feature_table(v).exists()]
    if missing:
        raise ConfigError(
            f"no feature table for {missing} under {settings.paths.features}.\n"
            "Hint: run `python -m feature_repo features` first."
        )
    ensure_online_tables(settings, store)
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"materialize: start {start} is not before end {end}.")
    if end is None:
        ends = [
            pl.scan_parquet(settings.paths.feature_table(v))
            .select(pl.col(S.EVENT_TIMESTAMP).max())
            .collect()
            .item()
            for v in views
        ]
        end = max(ends) + timedelta(seconds=1)
    if start is None:
        ttl = max(store.get_feature_view(v).ttl or timedelta(days=1) for v in views)
        start = end - ttl
    started = time.perf_counter()
    if stock or store.config.online_store.type != "redis":
        store.materialize(start_date=start, end_date=end, feature_views=views)
    else:
        from feature_repo.online_writer import fast_materialize

        fast_materialize(settings, store, start=start, end=end, views=views)
    logger.info(
        "materialize: %s from %s to %s in %.1f s", views, start, end, time.perf_counter() - started
    )
    return store


def ensure_online_tables(settings: Settings, store: FeatureStore) -> None:
    """With the SQLite fallback, create its tables if ``apply`` ran while Redis was up."""
    if store.config.online_store.type == "sqlite" and store.list_feature_views():
        apply(settings, store=store)


def export_env(settings: Settings) -> None:
    """Set the variables ``feature_store.yaml`` names in this process's environment."""
    os.environ.update(feast_env(settings))
