"""Shared fixtures: a private redis-server, private settings and data folders, a slice of
the real log. Nothing here touches a user's data, Redis or Feast project."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from feature_repo import schema as S
from feature_repo.config import DEFAULT_RAW_DIR, Settings

REAL_RAW_DIR = Path(os.environ.get("SHELFWISE_RAW_DIR", DEFAULT_RAW_DIR))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A throw-away ``redis-server`` on a free loopback port, keeping nothing on disk."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; `apt-get install redis-server`.")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def most_bought_slice(
    events: pl.DataFrame, items: pl.DataFrame, n_items: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The events and items of the ``n_items`` most bought items (ties by id), so that a
    model trained in a test embeds few titles."""
    top = (
        events.filter(pl.col(S.EVENT_TYPE) == S.PURCHASE)
        .group_by(S.ITEM_ID)
        .len()
        .sort("len", S.ITEM_ID, descending=[True, False])
        .head(n_items)[S.ITEM_ID]
        .implode()
    )
    return events.filter(pl.col(S.ITEM_ID).is_in(top)), items.filter(pl.col(S.ITEM_ID).is_in(top))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tmp_settings(tmp_path: Path) -> Settings:
    """Settings whose data folder is a fresh temporary folder (no Redis)."""
    return Settings(raw_dir=REAL_RAW_DIR, data_dir=tmp_path / "data", project="t_shelfwise")


@pytest.fixture(scope="session")
def real_log_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding copies of a few weeks of the real daily CSVs (read-only source)."""
    if not REAL_RAW_DIR.exists():
        pytest.skip(f"the real retail log is not at {REAL_RAW_DIR}")
    target = tmp_path_factory.mktemp("raw_slice")
    for src in sorted(REAL_RAW_DIR.glob("2010-12-0*.csv")):
        shutil.copy(src, target / src.name)
    return target
