"""The append-only audit log: one JSON line per response, one file per UTC day.

Files are ``Paths.audit_log / YYYY-MM-DD.jsonl``, named by the day of the request's time
(a replayed request carries its original time), and hold exactly the ``AUDIT_*`` keys of
:mod:`feature_repo.schema`, which the monitoring stage reads. User ids are pseudonymised
with a keyed hash (HMAC-SHA256): the same user always maps to the same value, and without
the salt the value cannot be turned back into the id.

Several worker processes may append to the same file: each record is written with one
``write`` on a file opened with ``O_APPEND`` under an exclusive ``flock``, so lines never
interleave.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feature_repo import schema as S

logger = logging.getLogger(__name__)

SALT_FILE = "audit_salt"


def load_salt(data_dir: Path, configured: str | None = None) -> bytes:
    """The pseudonymisation key: the configured one, else a random one kept in ``data_dir``."""
    if configured:
        return configured.encode()
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SALT_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def pseudonymise(user_id: str | None, salt: bytes) -> str | None:
    """A stable, non-reversible stand-in for ``user_id`` (``None`` for a guest)."""
    if user_id is None:
        return None
    return hmac.new(salt, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def audit_path(audit_dir: Path, when: datetime) -> Path:
    """The file of ``when``'s UTC day."""
    return audit_dir / f"{when.astimezone(UTC):%Y-%m-%d}.jsonl"


class AuditLog:
    """Appends one record per response under ``audit_dir``."""

    def __init__(self, audit_dir: Path, *, salt: bytes) -> None:
        self.audit_dir = Path(audit_dir)
        self.audit_dir.mkdir(parents=True, exist_ok=True)
        self.salt = salt
        self._lock = threading.Lock()

    def record(
        self,
        *,
        request_id: str,
        when: datetime,
        endpoint: str,
        user_id: str | None,
        model_version: str,
        k: int,
        items: Sequence[str],
        scores: Sequence[float],
        sources: Sequence[Sequence[str]],
        fallback: str | None,
        latency_ms: float,
    ) -> dict[str, Any]:
        """Build and append one record; returns it."""
        record: dict[str, Any] = {
            S.AUDIT_REQUEST_ID: request_id,
            S.AUDIT_TIMESTAMP: when.astimezone(UTC).isoformat(),
            S.AUDIT_ENDPOINT: endpoint,
            S.AUDIT_USER: pseudonymise(user_id, self.salt),
            S.AUDIT_IS_GUEST: user_id is None,
            S.AUDIT_MODEL_VERSION: model_version,
            S.AUDIT_K: k,
            S.AUDIT_ITEMS: list(items),
            S.AUDIT_SCORES: [round(float(s), 6) for s in scores],
            S.AUDIT_SOURCES: [list(s) for s in sources],
            S.AUDIT_FALLBACK: fallback,
            S.AUDIT_LATENCY_MS: round(float(latency_ms), 3),
        }
        self.append(record, when)
        return record

    def append(self, record: dict[str, Any], when: datetime) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        path = audit_path(self.audit_dir, when)
        with self._lock:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line)
            finally:
                os.close(fd)


def read_audit(audit_dir: Path) -> list[dict[str, Any]]:
    """Every record under ``audit_dir``, oldest file first (for tests and tools)."""
    records: list[dict[str, Any]] = []
    for path in sorted(Path(audit_dir).glob("*.jsonl")):
        with path.open() as handle:
            records.extend(json.loads(line) for line in handle if line.strip())
    return records
