"""Users who opted out of personalisation, kept on disk so the choice survives restarts.

The store is an append-only journal of ``{"user_id", "opted_out", "at"}`` lines; the latest
line of a user wins. Every worker process reads the journal again when its size changes
(one ``stat`` per request), so an opt-out taken by one worker holds in all of them at once.
Nothing of it lives in Redis: losing Redis loses no opt-out.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)


class OptOutStore:
    """The set of opted-out user ids, backed by ``path`` (a JSON-lines journal)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._opted_out: set[str] = set()
        self._offset = 0
        self._lock = threading.Lock()
        self._refresh()

    def _refresh(self) -> None:
        # Read only what was appended since the last look; the journal never shrinks.
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == self._offset:
            return
        with self._lock, self.path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            for line in complete.splitlines():
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    logger.warning("skipping a malformed line in %s", self.path)
                    continue
                if entry.get("opted_out"):
                    self._opted_out.add(str(entry["user_id"]))
                else:
                    self._opted_out.discard(str(entry["user_id"]))
            self._offset += len(complete)

    def is_opted_out(self, user_id: str | None) -> bool:
        if user_id is None:
            return False
        self._refresh()
        return user_id in self._opted_out

    def set(self, user_id: str, *, opted_out: bool) -> None:
        """Record the user's choice durably (fsync) before returning."""
        entry = {"user_id": user_id, "opted_out": opted_out, "at": datetime.now(UTC).isoformat()}
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._refresh()
        logger.info("user opt-out set to %s", opted_out)

    def __len__(self) -> int:
        self._refresh()
        return len(self._opted_out)
