"""Where things live and which services they use, read from the environment.

Every setting has a default that works from a fresh clone beside ``../shared``:

==========================  =================================================
variable                    default
==========================  =================================================
``SHELFWISE_RAW_DIR``       ``../shared/data/online_retail/by-day``
``SHELFWISE_DATA_DIR``      ``data/`` in the project root
``SHELFWISE_REDIS_URL``     ``redis://127.0.0.1:6379/0``
``SHELFWISE_FEAST_PROJECT`` ``shelfwise``
==========================  =================================================
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from feature_repo.errors import ConfigError

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FEATURE_REPO_DIR = Path(__file__).resolve().parent
DEFAULT_RAW_DIR = PROJECT_ROOT.parent / "shared" / "data" / "online_retail" / "by-day"
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PROJECT = "shelfwise"
UCI_DOWNLOAD_URL = "https://archive.ics.uci.edu/dataset/352/online+retail"


@dataclass(frozen=True)
class Paths:
    """The generated files under one data folder.

    Parameters
    ----------
    data_dir
        Root of every generated file; nothing is written outside it.
    """

    data_dir: Path

    @property
    def events(self) -> Path:
        """Cleaned events, Parquet partitioned by ``day=YYYY-MM-DD``."""
        return self.data_dir / "events"

    @property
    def quarantine(self) -> Path:
        """Rows set aside, with their reason, partitioned like the events."""
        return self.data_dir / "quarantine"

    @property
    def items(self) -> Path:
        return self.data_dir / "items.parquet"

    @property
    def ingest_manifest(self) -> Path:
        return self.data_dir / "ingest_manifest.json"

    @property
    def ingest_report(self) -> Path:
        return self.data_dir / "ingest_report.json"

    @property
    def features(self) -> Path:
        """Feature tables read by Feast's file sources."""
        return self.data_dir / "features"

    def feature_table(self, name: str) -> Path:
        return self.features / f"{name}.parquet"

    @property
    def feast(self) -> Path:
        return self.data_dir / "feast"

    @property
    def registry(self) -> Path:
        return self.feast / "registry.db"

    @property
    def sqlite_online(self) -> Path:
        return self.feast / "online.db"

    @property
    def models(self) -> Path:
        return self.data_dir / "models"

    @property
    def audit_log(self) -> Path:
        return self.data_dir / "audit"

    @property
    def reports(self) -> Path:
        return self.data_dir / "reports"


@dataclass(frozen=True)
class Settings:
    """Run-time configuration, usually built by :func:`load_settings`."""

    raw_dir: Path = DEFAULT_RAW_DIR
    data_dir: Path = DEFAULT_DATA_DIR
    redis_url: str = DEFAULT_REDIS_URL
    project: str = DEFAULT_PROJECT
    paths: Paths = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", Paths(Path(self.data_dir)))

    @property
    def redis_host_port(self) -> tuple[str, int, int]:
        """``(host, port, db)`` parsed from :attr:`redis_url`."""
        host, port, db, _ = self.redis_parts
        return host, port, db

    @property
    def redis_parts(self) -> tuple[str, int, int, str | None]:
        """``(host, port, db, password)`` parsed from :attr:`redis_url`."""
        hint = "Hint: SHELFWISE_REDIS_URL=redis://[:password@]127.0.0.1:6379/0"
        parsed = urlparse(self.redis_url)
        if parsed.scheme != "redis":
            raise ConfigError(
                f"SHELFWISE_REDIS_URL={self.redacted_redis_url!r} must use the redis:// "
                f"scheme (TLS and unix sockets are not supported).\n{hint}"
            )
        try:
            port = parsed.port or 6379
            db = int(parsed.path.strip("/") or 0)
        except ValueError as exc:
            raise ConfigError(
                f"SHELFWISE_REDIS_URL={self.redacted_redis_url!r}: {exc}; the port must be "
                f"1-65535 and the path a database number.\n{hint}"
            ) from exc
        return parsed.hostname or "127.0.0.1", port, db, parsed.password

    @property
    def redacted_redis_url(self) -> str:
        """:attr:`redis_url` with any password replaced by ``***``."""
        parsed = urlparse(self.redis_url)
        if parsed.password:
            return self.redis_url.replace(f":{parsed.password}@", ":***@", 1)
        return self.redis_url


def load_settings(**overrides: object) -> Settings:
    """Settings from ``SHELFWISE_*`` environment variables, then keyword overrides."""
    # Relative folders are taken from the current directory, once, here: Feast would
    # otherwise resolve them against the feature repo.
    values: dict[str, object] = {
        "raw_dir": Path(os.environ.get("SHELFWISE_RAW_DIR", DEFAULT_RAW_DIR)).absolute(),
        "data_dir": Path(os.environ.get("SHELFWISE_DATA_DIR", DEFAULT_DATA_DIR)).absolute(),
        "redis_url": os.environ.get("SHELFWISE_REDIS_URL", DEFAULT_REDIS_URL),
        "project": os.environ.get("SHELFWISE_FEAST_PROJECT", DEFAULT_PROJECT),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("raw_dir", "data_dir"):
        values[key] = Path(values[key]).absolute()  # type: ignore[arg-type]
    return Settings(**values)  # type: ignore[arg-type]
