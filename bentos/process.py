"""Start and stop the service as a subprocess on a loopback port (tests, replay, benchmark)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from bentos.loadgen import wait_ready
from feature_repo.config import PROJECT_ROOT

logger = logging.getLogger(__name__)

SERVICE = "bentos.service:Shelfwise"
TELEMETRY_OFF = {
    "FEAST_USAGE": "False",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
# One thread per library in a worker: on two cores the HTTP server, the worker and the load
# share the CPUs, and idle OpenMP/BLAS threads spinning cost more than they save.
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(port: int, *, host: str = "127.0.0.1") -> list[str]:
    """The ``bentoml serve`` command line of the service."""
    return [
        sys.executable, "-m", "bentoml", "serve", SERVICE,
        "--host", host, "--port", str(port),
    ]  # fmt: skip


class ServiceProcess:
    """The service in a child process, in its own process group.

    Parameters
    ----------
    env
        Variables added to this process's environment (settings, ``BENTOML_HOME``); the
        telemetry switches are always set.
    log_path
        Where the service's stdout and stderr go.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.env = {**SINGLE_THREAD, **os.environ, **TELEMETRY_OFF, **(env or {})}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout_s: float = 240.0) -> ServiceProcess:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            serve_command(self.port),
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(self.url, timeout_s=timeout_s, alive=lambda: self.process.poll() is None)  # type: ignore[union-attr]
        except (RuntimeError, TimeoutError):
            self.stop()
            raise
        logger.info("service ready at %s (pid %d)", self.url, self.process.pid)
        return self

    def stop(self, *, timeout_s: float = 20.0) -> None:
        """SIGTERM to the service's process group, then SIGKILL if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout_s)
            except ProcessLookupError:
                pass
        self.process = None
        # Workers left in the group (if any) go with it.
        time.sleep(0.1)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
