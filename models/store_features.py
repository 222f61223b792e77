"""The ranker's features from its Feast feature service, read through the registry.

The feature list is never written down here: it is whatever the feature service named in
the model's lineage lists in the registry. Registering a feature (a field on a feature
view, listed in the service) makes the next training read it with no code change.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from feature_repo import schema as S
from feature_repo.errors import SchemaError
from models.data import as_utc

if TYPE_CHECKING:
    from feast import FeatureStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceFeatures:
    """Feature names of one feature service, split by the entity they describe."""

    service: str
    user: tuple[str, ...]
    item: tuple[str, ...]
    other: tuple[str, ...]
    refs: tuple[str, ...]  # "view:feature", as Feast names them

    @property
    def names(self) -> list[str]:
        return [*self.user, *self.item, *self.other]


def service_features(store: FeatureStore, service: str) -> ServiceFeatures:
    """Read the features of ``service`` from the registry, grouped by join key."""
    fs = store.get_feature_service(service)
    user: list[str] = []
    item: list[str] = []
    other: list[str] = []
    refs: list[str] = []
    for projection in fs.feature_view_projections:
        view = store.get_feature_view(projection.name)
        keys = {c.name for c in view.entity_columns}
        names = [f.name for f in projection.features]
        refs += [f"{projection.name_to_use()}:{n}" for n in names]
        if keys == {S.USER_ID}:
            user += names
        elif keys == {S.ITEM_ID}:
            item += names
        else:
            other += names
    if other:
        # Only user and item keys exist at a (user, cut-off) query; other views cannot join.
        raise SchemaError(
            f"feature service {service!r} lists features {other} of views keyed by other "
            f"entities; the rule is user- or item-keyed views only for the ranker."
        )
    return ServiceFeatures(service, tuple(user), tuple(item), tuple(other), tuple(refs))


def historical_features(
    store: FeatureStore,
    service: str,
    pairs: pd.DataFrame,
) -> pd.DataFrame:
    """Point-in-time features of ``pairs`` (``user_id``, ``item_id``, ``event_timestamp``).

    Returns a frame aligned with ``pairs`` row for row (same index), holding the service's
    feature columns. Each row sees only feature rows stamped at or before its timestamp.
    """
    start = time.perf_counter()
    keys = [S.USER_ID, S.ITEM_ID, S.EVENT_TIMESTAMP]
    entity_df = pairs[keys].drop_duplicates().reset_index(drop=True)
    entity_df[S.EVENT_TIMESTAMP] = pd.to_datetime(entity_df[S.EVENT_TIMESTAMP], utc=True)
    job = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(service)
    )
    frame = job.to_df()
    frame[S.EVENT_TIMESTAMP] = pd.to_datetime(frame[S.EVENT_TIMESTAMP], utc=True)
    left = pairs[keys].copy()
    left[S.EVENT_TIMESTAMP] = pd.to_datetime(left[S.EVENT_TIMESTAMP], utc=True)
    merged = left.merge(frame, on=keys, how="left", validate="many_to_one")
    merged.index = pairs.index
    logger.debug(
        "%d rows of %r read point in time in %.2f s",
        len(entity_df),
        service,
        time.perf_counter() - start,
    )
    return merged.drop(columns=keys)


def cutoff_timestamp(cutoff: datetime) -> pd.Timestamp:
    return pd.Timestamp(as_utc(cutoff))


def online_row(names: tuple[str, ...], values: dict[str, Any], n: int) -> dict[str, Any]:
    """Broadcast one entity's values (missing names become None) to ``n`` rows."""
    return {name: [values.get(name)] * n for name in names}
