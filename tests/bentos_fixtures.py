"""A real serving environment for the service's integration tests.

A slice of the real log is ingested into a temporary data folder, its features are
materialised into a private redis-server (which saves to disk, so it can be stopped and
started again without losing the features), a real recommender is trained into a private
BentoML home, and the service runs as a real ``bentoml serve`` subprocess on a free
loopback port. Built once per test session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from bentos.process import ServiceProcess
from bentos.sandbox import RedisProcess, build_features, copy_log_slice
from feature_repo import schema as S
from feature_repo.config import Settings, load_settings
from feature_repo.timesplit import time_split
from models.training import TrainConfig
from tests.conftest import REAL_RAW_DIR, most_bought_slice

# The log's first nine days, with training limited to the most bought items and two-day
# validation and test windows: a real model, trained in seconds rather than minutes.
FIRST_DAY, LAST_DAY = "2010-12-01", "2010-12-09"
N_ITEMS = 300
WINDOW = timedelta(days=2)
TRAIN_CONFIG = TrainConfig(
    n_candidates=60,
    n_train_cutoffs=1,
    label_days=1,
    max_users_per_cutoff=80,
    max_eval_users=30,
    progress=False,
    ranker_params={"n_estimators": 40, "early_stopping_rounds": 10},
)


@dataclass
class ServingEnv:
    root: Path
    settings: Settings
    redis: RedisProcess
    bentoml_home: Path
    model_version: str
    service: ServiceProcess | None = None

    def service_env(self, **extra: str) -> dict[str, str]:
        return {
            "SHELFWISE_DATA_DIR": str(self.settings.data_dir),
            "SHELFWISE_REDIS_URL": self.settings.redis_url,
            "SHELFWISE_FEAST_PROJECT": self.settings.project,
            "BENTOML_HOME": str(self.bentoml_home),
            "SHELFWISE_SERVE_REDIS_BUDGET_MS": "250",
            "SHELFWISE_SERVE_REDIS_RETRY_S": "0.3",
            "SHELFWISE_SERVE_MAX_BODY_BYTES": "4096",
            **extra,
        }

    def start_service(self, **extra: str) -> ServiceProcess:
        self.service = ServiceProcess(
            env=self.service_env(**extra), log_path=self.root / "service.log"
        ).start()
        return self.service

    def stop_service(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    def service_log(self) -> str:
        path = self.root / "service.log"
        return path.read_text(errors="replace") if path.exists() else ""


def build_env(root: Path) -> ServingEnv:
    """Ingest a slice, materialise it into a private Redis, train a model."""

    from models.api import train
    from models.training import load_events

    if not REAL_RAW_DIR.exists():
        pytest.skip(f"the real retail log is not at {REAL_RAW_DIR}")
    raw = copy_log_slice(REAL_RAW_DIR, root / "raw", first_day=FIRST_DAY, last_day=LAST_DAY)
    redis_proc = RedisProcess(root / "redis", persist=True).start()
    settings = load_settings(
        raw_dir=raw, data_dir=root / "data", redis_url=redis_proc.url, project="t_serving"
    )
    build_features(settings)

    # Training sees the most bought items only (few titles to embed), on short windows.
    events, items = load_events(settings)
    assert items is not None
    events, items = most_bought_slice(events, items, N_ITEMS)
    lo, hi = events[S.EVENT_TIMESTAMP].min(), events[S.EVENT_TIMESTAMP].max()
    bentoml_home = root / "bentoml"
    started = time.perf_counter()
    tag = train(
        settings,
        config=TRAIN_CONFIG,
        events=events,
        items=items,
        split=time_split(lo, hi + timedelta(seconds=1), window=WINDOW),
        bentoml_home=bentoml_home,
        reports_dir=root / "reports",
    )
    print(f"trained {tag} in {time.perf_counter() - started:.1f} s")
    return ServingEnv(root, settings, redis_proc, bentoml_home, tag)


@pytest.fixture(scope="session")
def serving_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingEnv]:
    env = build_env(tmp_path_factory.mktemp("serving"))
    env.start_service()
    try:
        yield env
    finally:
        env.stop_service()
        env.redis.stop()
