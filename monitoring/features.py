"""The ranker's features in a window, read point in time from Feast's offline store.

Each view of the feature service is read for the entities active in the window (users who
bought, items sold), one row per entity and day at that day's midnight, through Feast's
point-in-time join. The feature service is read from the registry by name (never by
importing the definitions), so the monitoring always follows what the service lists.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from feature_repo import schema as S
from feature_repo.config import Settings
from feature_repo.ingest import scan_events
from monitoring.config import MonitoringConfig
from monitoring.drift import CATEGORICAL, NUMERICAL, MonitoringError
from monitoring.windows import Window

if TYPE_CHECKING:
    from feast import FeatureStore

logger = logging.getLogger(__name__)


@dataclass
class ViewFrames:
    """Feature values of one feature view for the sampled entity rows of both windows."""

    view: str
    reference: pl.DataFrame
    current: pl.DataFrame
    kinds: dict[str, str] = field(default_factory=dict)
    join_keys: list[str] = field(default_factory=list)

    @property
    def numerical(self) -> list[str]:
        return [c for c, k in self.kinds.items() if k == NUMERICAL]

    @property
    def categorical(self) -> list[str]:
        return [c for c, k in self.kinds.items() if k == CATEGORICAL]


def open_store(settings: Settings) -> FeatureStore:
    """The feature store on ``settings``' registry, which must already hold the views."""
    if not settings.paths.registry.exists():
        raise MonitoringError(
            f"no Feast registry at {settings.paths.registry}.\n"
            "Hint: run `make features` (features, apply, materialize) first."
        )
    from feature_repo.store import get_store

    # Offline reads never touch the online store, so no Redis check is needed here.
    return get_store(settings, use_redis=True)


def entity_rows(
    settings: Settings, window: Window, join_keys: list[str], *, n: int, random_state: int
) -> pl.DataFrame:
    """Up to ``n`` entity-days active in ``window``, each at midnight UTC of its day.

    An entity is active on a day when it appears in a purchase that day; at that midnight
    its daily snapshot holds what was known before the day, which is what the ranker
    would have read for it then.
    """
    rows = (
        scan_events(settings.paths)
        .filter(
            pl.col(S.EVENT_TIMESTAMP).is_between(window.start, window.end, closed="left"),
            pl.col(S.EVENT_TYPE) == S.PURCHASE,
            *[pl.col(k).is_not_null() for k in join_keys],
        )
        .select(*join_keys, pl.col(S.EVENT_TIMESTAMP).dt.truncate("1d").alias(S.EVENT_TIMESTAMP))
        .unique()
        .sort([S.EVENT_TIMESTAMP, *join_keys])
        .collect()
    )
    if rows.height > n:
        rows = rows.sample(n, seed=random_state).sort([S.EVENT_TIMESTAMP, *join_keys])
    return rows


def feature_frames(
    settings: Settings,
    reference: Window,
    current: Window,
    *,
    config: MonitoringConfig,
    service_name: str = S.RANKER_SERVICE,
    store: FeatureStore | None = None,
) -> list[ViewFrames]:
    """Point-in-time values of every view of ``service_name`` for both windows.

    Each view is read for its own entities (users active in the window for the user view,
    items sold in it for the item view), so a feature's distribution is over entity-days
    rather than weighted by basket size.

    Raises
    ------
    MonitoringError
        When the registry is missing or does not hold the feature service.
    """
    store = store or open_store(settings)
    try:
        service = store.get_feature_service(service_name)
    except Exception as exc:  # Feast raises its own not-found classes
        raise MonitoringError(
            f"feature service {service_name!r} is not in the registry "
            f"{settings.paths.registry}: {exc}\nHint: run `make features`."
        ) from exc

    out = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        view_name = projection.name_to_use()
        features = [f.name for f in projection.features]
        refs = [f"{view_name}:{f}" for f in features]
        join_keys = list(view.join_keys)
        frames = []
        for label, window in (("reference", reference), ("current", current)):
            entities = entity_rows(
                settings,
                window,
                join_keys,
                n=config.feature_sample_rows,
                random_state=config.random_state,
            )
            started = time.perf_counter()
            if entities.height == 0:
                frame = pl.DataFrame(schema={k: pl.String for k in join_keys})
            else:
                job = store.get_historical_features(entity_df=entities.to_pandas(), features=refs)
                frame = pl.from_pandas(job.to_df())
            logger.info(
                "features: %s, %s window %s: %d entity-day(s) read in %.1f s",
                view_name,
                label,
                window.label(),
                frame.height,
                time.perf_counter() - started,
            )
            frames.append(frame)

        # Kind of each feature: declared categorical, or text in the data.
        kinds: dict[str, str] = {}
        for feature in features:
            dtype = frames[0].schema.get(feature) or frames[1].schema.get(feature)
            is_text = dtype is not None and dtype in (pl.String, pl.Categorical)
            kinds[feature] = (
                CATEGORICAL if feature in S.CATEGORICAL_FEATURES or is_text else NUMERICAL
            )
        out.append(ViewFrames(view_name, frames[0], frames[1], kinds, join_keys))
    return out
