"""Feast objects of the Shelfwise feature repo, declared in dependency order: entities,
sources, feature views, feature services.

``feast apply`` imports this file as a top-level module; :func:`build_definitions` lets the
project's own command line and tests apply the same objects with other settings. Keep it
cheap to import: no data is read here.

To register a new feature: compute its column in ``features.py``, add its name to the
view's list in ``schema.py`` (which adds a ``Field`` here), and list it in a feature
service. The next ``feast apply`` and training pick it up.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, PrimitiveFeastType, String

from feature_repo import schema as S
from feature_repo.config import Settings, load_settings

# Daily snapshots for every entity: a ttl a little over a day finds the latest snapshot
# and keeps DuckDB's point-in-time join from scanning months of rows per entity.
SNAPSHOT_TTL = timedelta(days=2)
SESSION_TTL = timedelta(days=1)
OWNER = "shelfwise"


def _dtype(name: str) -> PrimitiveFeastType:
    if name in S.CATEGORICAL_FEATURES:
        return String
    if any(token in name for token in ("monetary", "spend", "value", "price", "rate")):
        return Float64
    return Int64


def build_definitions(settings: Settings) -> dict[str, Any]:
    """Every Feast object, with file sources under ``settings.paths``, keyed by name."""
    paths = settings.paths

    # Entities.
    user = Entity(
        name=S.USER_ENTITY,
        join_keys=[S.USER_ID],
        value_type=ValueType.STRING,
        description="A customer with an account (CustomerID); guests have none.",
        tags={"owner": OWNER},
    )
    item = Entity(
        name=S.ITEM_ENTITY,
        join_keys=[S.ITEM_ID],
        value_type=ValueType.STRING,
        description="A product (StockCode, trimmed and upper-cased).",
        tags={"owner": OWNER},
    )
    session = Entity(
        name=S.SESSION_ENTITY,
        join_keys=[S.SESSION_ID],
        value_type=ValueType.STRING,
        description="One basket (invoice), of a customer or a guest.",
        tags={"owner": OWNER},
    )

    # Sources: the Parquet tables written by the feature pipelines.
    def source(view: str) -> FileSource:
        return FileSource(
            name=f"{view}_source",
            path=str(paths.feature_table(view)),
            timestamp_field=S.EVENT_TIMESTAMP,
            created_timestamp_column=S.CREATED_TIMESTAMP,
            description=f"Daily snapshots written by the {view} pipeline.",
        )

    # Feature views.
    def view(
        name: str, entity: Entity, features: tuple[str, ...], ttl: timedelta, description: str
    ) -> FeatureView:
        return FeatureView(
            name=name,
            entities=[entity],
            ttl=ttl,
            schema=[Field(name=f, dtype=_dtype(f)) for f in features],
            source=source(name),
            online=True,
            description=description,
            tags={"owner": OWNER, "cadence": "daily"},
        )

    user_features = view(
        S.USER_VIEW,
        user,
        S.USER_FEATURES,
        SNAPSHOT_TTL,
        "Recency, frequency, spend and activity windows of a customer, before each day.",
    )
    item_features = view(
        S.ITEM_VIEW,
        item,
        S.ITEM_FEATURES,
        SNAPSHOT_TTL,
        "Sales, buyers, prices and cancellation rate of an item, before each day.",
    )
    session_features = view(
        S.SESSION_VIEW,
        session,
        S.SESSION_FEATURES,
        SESSION_TTL,
        "Basket size, value, time and country of a session.",
    )

    # Feature services: versioned, so a trained model keeps reading what it was trained on.
    ranker_v1 = FeatureService(
        name=S.RANKER_SERVICE,
        features=[user_features, item_features],
        description="Features the ranker reads for a (user, candidate item) pair.",
        tags={"owner": OWNER, "version": "1"},
    )
    return {
        "user": user,
        "item": item,
        "session": session,
        "user_features": user_features,
        "item_features": item_features,
        "session_features": session_features,
        "ranker_v1": ranker_v1,
    }


_objects = build_definitions(load_settings())
user = _objects["user"]
item = _objects["item"]
session = _objects["session"]
user_features = _objects["user_features"]
item_features = _objects["item_features"]
session_features = _objects["session_features"]
ranker_v1 = _objects["ranker_v1"]
