"""Run-time configuration of the recommendation service, read from ``SHELFWISE_SERVE_*``.

==================================  ==========  ==============================================
variable                            default     what
==================================  ==========  ==============================================
``SHELFWISE_MODEL_VERSION``         pinned/     model version to serve; else the version pinned by
                                    latest      ``python -m bentos use-version``; else the latest
``SHELFWISE_SERVE_REDIS_BUDGET_MS`` ``40``      time the online-feature read may take before the
                                                answer falls back to the non-personalised list
``SHELFWISE_SERVE_REDIS_RETRY_S``   ``1.0``     after a Redis failure, how long requests skip
                                                Redis before trying it again
``SHELFWISE_SERVE_ITEM_CACHE_S``    ``300``     how long item features stay cached in process
                                                (``0`` reads every item from Redis each time)
``SHELFWISE_SERVE_N_CANDIDATES``    ``200``     retrieval depth
``SHELFWISE_SERVE_RECENT_DAYS``     ``7``       items the user bought this many days before the
                                                request are not recommended
``SHELFWISE_SERVE_UNSOLD_DAYS``     ``60``      items not sold for this many days count as
                                                unavailable
``SHELFWISE_SERVE_MMR_LAMBDA``      ``0.8``     MMR trade-off: 1 ranks by score alone, lower
                                                values favour titles unlike those already shown
``SHELFWISE_SERVE_MAX_BODY_BYTES``  ``65536``   request bodies above this size get 413
``SHELFWISE_SERVE_NOW``             data end    the service's clock: ``wall`` for the real time,
                                                an ISO timestamp, or (default) the log's last
                                                event, since the shipped log is historical
``SHELFWISE_SERVE_WORKERS``         ``1``       BentoML worker processes
``SHELFWISE_SERVE_AUDIT_DIR``      ``data/``   audit log folder (default ``Paths.audit_log``);
                                    ``audit``   benchmarks point it elsewhere
``SHELFWISE_AUDIT_SALT``            generated   secret mixed into the pseudonymised user ids;
                                                by default a random salt kept under the data folder
==================================  ==========  ==============================================
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from feature_repo.config import Settings, load_settings
from feature_repo.errors import ConfigError

logger = logging.getLogger(__name__)

SERVING_PIN_FILE = "serving.json"


def _env_float(name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number.") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={raw!r} must lie in [{minimum}, {maximum}].")
    return value


def _env_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    return int(_env_float(name, default, minimum=minimum, maximum=maximum))


@dataclass(frozen=True)
class ServeConfig:
    """Everything the service reads from its environment, validated once at start-up."""

    settings: Settings
    model_version: str | None = None
    redis_budget_ms: float = 40.0
    redis_retry_s: float = 1.0
    item_cache_s: float = 300.0
    n_candidates: int = 200
    recent_days: int = 7
    unsold_days: int = 60
    mmr_lambda: float = 0.8
    max_body_bytes: int = 65536
    now: str = "data_end"
    workers: int = 1
    audit_salt: str | None = None
    explain_top: int = 3
    audit_dir: Path | None = None

    @property
    def audit_log(self) -> Path:
        """Folder of the audit log (``Paths.audit_log`` unless overridden)."""
        return self.audit_dir or self.settings.paths.audit_log

    @property
    def opt_out_file(self) -> Path:
        """The opt-out journal; under the data folder, never in Redis."""
        return self.settings.paths.data_dir / "opt_out.jsonl"

    @property
    def pin_file(self) -> Path:
        """Where ``use-version`` and ``rollback`` pin the served model version."""
        return self.settings.paths.data_dir / SERVING_PIN_FILE


def read_pinned_version(settings: Settings) -> str | None:
    """The model version pinned under the data folder, or ``None``."""
    path = settings.paths.data_dir / SERVING_PIN_FILE
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text()).get("model_version")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); delete it or re-pin.") from exc
    return str(value) if value else None


def write_pinned_version(settings: Settings, version: str | None, *, previous: str | None) -> Path:
    """Pin ``version`` (``None`` unpins: the latest serves), keeping the one it replaces."""
    path = settings.paths.data_dir / SERVING_PIN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"model_version": version, "previous": previous}, indent=2))
    tmp.replace(path)
    return path


def load_serve_config(settings: Settings | None = None) -> ServeConfig:
    """Build :class:`ServeConfig` from ``SHELFWISE_*`` variables; errors name the variable."""
    settings = settings or load_settings()
    version = os.environ.get("SHELFWISE_MODEL_VERSION") or read_pinned_version(settings)
    return ServeConfig(
        settings=settings,
        model_version=version if version not in (None, "", "latest") else None,
        redis_budget_ms=_env_float(
            "SHELFWISE_SERVE_REDIS_BUDGET_MS", 40.0, minimum=1.0, maximum=10_000.0
        ),
        redis_retry_s=_env_float("SHELFWISE_SERVE_REDIS_RETRY_S", 1.0, minimum=0.0, maximum=600),
        item_cache_s=_env_float("SHELFWISE_SERVE_ITEM_CACHE_S", 300.0, minimum=0.0, maximum=1e6),
        n_candidates=_env_int("SHELFWISE_SERVE_N_CANDIDATES", 200, minimum=10, maximum=2000),
        recent_days=_env_int("SHELFWISE_SERVE_RECENT_DAYS", 7, minimum=0, maximum=3650),
        unsold_days=_env_int("SHELFWISE_SERVE_UNSOLD_DAYS", 60, minimum=1, maximum=3650),
        mmr_lambda=_env_float("SHELFWISE_SERVE_MMR_LAMBDA", 0.8, minimum=0.0, maximum=1.0),
        max_body_bytes=_env_int(
            "SHELFWISE_SERVE_MAX_BODY_BYTES", 65536, minimum=256, maximum=64 << 20
        ),
        now=os.environ.get("SHELFWISE_SERVE_NOW", "data_end") or "data_end",
        workers=_env_int("SHELFWISE_SERVE_WORKERS", 1, minimum=1, maximum=64),
        audit_salt=os.environ.get("SHELFWISE_AUDIT_SALT") or None,
        audit_dir=Path(audit) if (audit := os.environ.get("SHELFWISE_SERVE_AUDIT_DIR")) else None,
    )
