"""A real serving environment for the service's integration tests.

A slice of the real log is ingested into a temporary data folder, its features are
materialised into a private redis-server (which saves to disk, so it can be stopped and
started again without losing the features), a real recommender is trained into a private
BentoML home, and the service runs as a real ``bentoml serve`` subprocess on a free
loopback port. Built once per test session.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bentos.process import ServiceProcess
from bentos.sandbox import RedisProcess, build_features, copy_log_slice
from feature_repo.config import Settings, load_settings
from tests.conftest import REAL_RAW_DIR

# About four months: enough for a training, a validation and a test window of four weeks.
FIRST_DAY = "2011-08-01"
TITLE_CACHE = "title_embeddings.npz"


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
    from models.training import TrainConfig

    if not REAL_RAW_DIR.exists():
        pytest.skip(f"the real retail log is not at {REAL_RAW_DIR}")
    raw = copy_log_slice(REAL_RAW_DIR, root / "raw", first_day=FIRST_DAY)
    redis_proc = RedisProcess(root / "redis", persist=True).start()
    settings = load_settings(
        raw_dir=raw, data_dir=root / "data", redis_url=redis_proc.url, project="t_serving"
    )
    build_features(settings)

    # Title vectors are cached by title hash; reuse those `make train` computed, if any.
    cached = load_settings().paths.models / "cache" / TITLE_CACHE
    if cached.exists():
        target = settings.paths.models / "cache"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(cached, target / TITLE_CACHE)
    bentoml_home = root / "bentoml"
    started = time.perf_counter()
    tag = train(
        settings,
        config=TrainConfig(
            n_train_cutoffs=1, max_users_per_cutoff=200, max_eval_users=50, progress=False
        ),
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
