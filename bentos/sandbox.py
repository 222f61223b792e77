"""A private, throw-away serving environment: its own redis-server, data folder and model store.

The integration tests and the serving benchmarks build one so they never touch a user's
Redis, data folder or BentoML home: ingest (the whole log or a slice), feature tables,
``feast apply`` and ``materialize`` into the private Redis, and optionally a model.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bentos.process import free_port
from feature_repo.config import Settings

logger = logging.getLogger(__name__)


@dataclass
class RedisProcess:
    """``redis-server`` on a loopback port; ``persist`` keeps an RDB file across restarts."""

    workdir: Path
    port: int = field(default_factory=free_port)
    persist: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout_s: float = 10.0) -> RedisProcess:

        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError(
                "redis-server is not installed; `apt-get install redis-server`."
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        save = ["--save", "3600 1", "--dbfilename", "dump.rdb"] if self.persist else ["--save", ""]
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", *save,
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                import redis

                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return self
            except (OSError, Exception):
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Stop the server; with ``persist`` its data is saved first and read back on start."""
        if self.process is None:
            return
        if self.persist:
            import redis

            redis.Redis(port=self.port, socket_timeout=5).save()
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None


def build_features(settings: Settings, *, raw: Path | None = None) -> None:
    """Ingest, feature tables, ``apply`` and ``materialize`` for ``settings``."""
    from feature_repo.features import build_features as build_tables
    from feature_repo.ingest import ingest
    from feature_repo.store import apply, materialize

    started = time.perf_counter()
    ingest(raw or settings.raw_dir, settings.paths)
    build_tables(settings.paths)
    store = apply(settings)
    materialize(settings, store=store)
    logger.info("sandbox features ready in %.1f s", time.perf_counter() - started)


def copy_log_slice(
    raw_dir: Path, target: Path, *, first_day: str, last_day: str = "9999-12-31"
) -> Path:
    """Copy the daily CSVs of ``[first_day, last_day]`` (``YYYY-MM-DD``) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for src in sorted(Path(raw_dir).glob("*.csv")):
        if first_day <= src.stem <= last_day:
            shutil.copy(src, target / src.name)
    return target
