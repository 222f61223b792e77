"""Online features read straight from Feast's Redis layout, with item features cached.

Feast's ``get_online_features`` spends most of its time in Python around the Redis round
trip (building protos, resolving the registry, converting to dictionaries). For one user
and a few hundred items that is several times a raw pipeline. This reader keeps Feast's
layout and semantics and drops the overhead:

* a Redis key is Feast's serialised entity key (version 3) followed by the project name;
* the hash holds one field per feature, named by the murmur3 hash of ``"view:feature"``,
  plus ``"_ts:view"`` with the row's event time; each value is a serialised ``ValueProto``;
* an entity or a feature missing from Redis reads as ``None``, as in Feast.

Item features change once a day (at materialisation), so they may be cached in process for
``item_cache_s`` seconds; user features are read on every request. The unit of work is one
pipelined ``HMGET`` per entity, sent in one round trip under a time budget.

``tests/integration/test_bentos_online.py`` checks that every value equals
``FeatureStore.get_online_features`` on a real Redis.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import redis
    from feast import FeatureStore

logger = logging.getLogger(__name__)


class OnlineStoreError(Exception):
    """Redis could not be read within the budget; ``reason`` is ``unavailable`` or ``timeout``."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ViewLayout:
    """Where one feature view's features live in Feast's Redis hashes."""

    name: str
    join_key: str
    features: tuple[str, ...]
    fields: tuple[bytes, ...]  # one per feature, then the timestamp field


_DECODED: dict[bytes, Any] = {}
_DECODED_MAX = 500_000


def _parse_value(raw: bytes) -> Any:
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    value = ValueProto()
    value.ParseFromString(raw)
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    if kind.endswith("_list_val"):
        return list(getattr(value, kind).val)
    if kind == "unix_timestamp_val":
        from feast.type_map import feast_value_type_to_python_type

        return feast_value_type_to_python_type(value)
    return getattr(value, kind)


_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_TAG_STRING, _TAG_INT32, _TAG_INT64, _TAG_DOUBLE, _TAG_FLOAT, _TAG_BOOL = 18, 24, 32, 41, 53, 56


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _parse_scalar(raw: bytes) -> Any:
    """Decode the common one-field scalar ``ValueProto`` encodings without protobuf.

    Returns the module's ``_DECODED`` sentinel for anything else (lists, timestamps,
    unknown fields), which then goes through protobuf itself.
    """
    tag = raw[0]
    if tag == _TAG_DOUBLE and len(raw) == 9:
        return _DOUBLE.unpack_from(raw, 1)[0]
    if tag == _TAG_FLOAT and len(raw) == 5:
        return _FLOAT.unpack_from(raw, 1)[0]
    if tag in (_TAG_INT64, _TAG_INT32, _TAG_BOOL):
        value, end = _varint(raw, 1)
        if end != len(raw):
            return _DECODED
        if tag == _TAG_BOOL:
            return bool(value)
        if value >= 1 << 63:  # two's complement: negative ints are 10-byte varints
            value -= 1 << 64
        return value
    if tag == _TAG_STRING:
        length, start = _varint(raw, 1)
        if start + length != len(raw):
            return _DECODED
        return raw[start:].decode("utf-8")
    return _DECODED


def _decode_value(raw: bytes | None) -> Any:
    """A serialised ``ValueProto`` as the Python value Feast would return (``None`` if unset).

    Feature values repeat a lot (counts, prices, countries), so decoded scalars are memoised
    by their bytes; lists are decoded every time, since a caller may change them.
    """
    if not raw:
        return None
    value = _DECODED.get(raw, _DECODED)
    if value is not _DECODED:
        return value
    value = _parse_scalar(raw)
    if value is _DECODED:
        value = _parse_value(raw)
    if not isinstance(value, list) and len(_DECODED) < _DECODED_MAX:
        _DECODED[raw] = value
    return value


def view_layouts(store: FeatureStore, feature_service: str) -> dict[str, ViewLayout]:
    """The Redis layout of every feature view that ``feature_service`` reads.

    Raises
    ------
    ValueError
        If a view has more than one join key (the service reads single-key entities only).
    """
    from feast.infra.online_stores.helpers import _mmh3

    service = store.get_feature_service(feature_service)
    layouts: dict[str, ViewLayout] = {}
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        join_keys = [column.name for column in view.entity_columns]
        if len(join_keys) != 1:
            raise ValueError(
                f"feature view {view.name!r} has join keys {join_keys}; the fast reader "
                "supports one join key per view."
            )
        features = tuple(f.name for f in projection.features)
        fields = (
            *(_mmh3(f"{view.name}:{name}") for name in features),
            f"_ts:{view.name}".encode(),
        )
        layouts[view.name] = ViewLayout(view.name, join_keys[0], features, fields)
    return layouts


class FeastRedisReader:
    """Reads a feature service's features for one user and many items from Redis.

    Parameters
    ----------
    client
        A redis-py client whose socket timeouts are the read budget.
    project
        The Feast project (the suffix of every key).
    layouts
        From :func:`view_layouts`.
    item_view
        Name of the view keyed by ``item_id`` whose rows may be cached.
    item_cache_s
        Seconds a cached item row stays fresh; ``0`` turns the cache off.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        project: str,
        layouts: Mapping[str, ViewLayout],
        item_view: str | None = None,
        item_cache_s: float = 300.0,
        entity_key_serialization_version: int = 3,
    ) -> None:
        self.client = client
        self.project = project.encode()
        self.layouts = dict(layouts)
        self.item_view = item_view
        self.item_cache_s = item_cache_s
        self.version = entity_key_serialization_version
        self._keys: dict[tuple[str, str], bytes] = {}
        self._item_cache: dict[str, tuple[float, tuple[Any, ...]]] = {}
        self._lock = threading.Lock()

    # -- keys and decoding ------------------------------------------------------------------

    def redis_key(self, join_key: str, value: str) -> bytes:
        """Feast's Redis key of one entity (memoised: item keys repeat on every request)."""
        cache_key = (join_key, value)
        key = self._keys.get(cache_key)
        if key is None:
            from feast.infra.key_encoding_utils import serialize_entity_key
            from feast.protos.feast.types.EntityKey_pb2 import EntityKey
            from feast.protos.feast.types.Value_pb2 import Value

            entity = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=value)])
            key = serialize_entity_key(entity, self.version) + self.project
            if len(self._keys) < 1_000_000:
                self._keys[cache_key] = key
        return key

    def _fetch(self, requests: Sequence[tuple[ViewLayout, str]]) -> list[list[bytes | None]]:
        """One pipelined round trip: ``HMGET`` of each ``(view, entity id)``."""
        import redis

        try:
            with self.client.pipeline(transaction=False) as pipe:
                for layout, entity_id in requests:
                    pipe.hmget(self.redis_key(layout.join_key, entity_id), layout.fields)  # type: ignore[arg-type]
                return pipe.execute()  # type: ignore[no-any-return]
        except redis.TimeoutError as exc:
            raise OnlineStoreError(f"Redis read timed out: {exc}", reason="timeout") from exc
        except (redis.ConnectionError, OSError) as exc:
            raise OnlineStoreError(f"Redis unavailable: {exc}", reason="unavailable") from exc
        except redis.RedisError as exc:
            raise OnlineStoreError(f"Redis error: {exc}", reason="unavailable") from exc

    @staticmethod
    def _row(layout: ViewLayout, raw: Sequence[bytes | None]) -> tuple[Any, ...]:
        # The last field is the row's timestamp; an entity with no row reads as all None.
        return tuple(_decode_value(value) for value in raw[: len(layout.features)])

    # -- public reads -----------------------------------------------------------------------

    def read(
        self, entities: Mapping[str, Sequence[str]], *, use_cache: bool = True
    ) -> dict[str, dict[str, list[Any]]]:
        """Features of each view for the given entity ids, in request order.

        Parameters
        ----------
        entities
            View name to entity ids (e.g. ``{"user_features": ["12347"], "item_features":
            [...]}``).
        use_cache
            Serve fresh cached item rows without asking Redis.

        Returns
        -------
        dict
            View name to ``{feature name: list of values}``, each list aligned with the ids.
        """
        now = time.monotonic()
        rows: dict[str, list[tuple[Any, ...] | None]] = {}
        wanted: list[tuple[ViewLayout, str]] = []
        slots: list[tuple[str, int]] = []
        for view, ids in entities.items():
            layout = self.layouts[view]
            view_rows: list[tuple[Any, ...] | None] = [None] * len(ids)
            cacheable = use_cache and view == self.item_view and self.item_cache_s > 0
            for i, entity_id in enumerate(ids):
                if cacheable:
                    hit = self._item_cache.get(entity_id)
                    if hit is not None and now - hit[0] < self.item_cache_s:
                        view_rows[i] = hit[1]
                        continue
                wanted.append((layout, entity_id))
                slots.append((view, i))
            rows[view] = view_rows

        if wanted:
            replies = self._fetch(wanted)
            with self._lock:
                for (layout, entity_id), (view, i), raw in zip(wanted, slots, replies, strict=True):
                    row = self._row(layout, raw)
                    rows[view][i] = row
                    if view == self.item_view and self.item_cache_s > 0:
                        self._item_cache[entity_id] = (now, row)

        out: dict[str, dict[str, list[Any]]] = {}
        for view, view_rows in rows.items():
            layout = self.layouts[view]
            columns = list(zip(*view_rows, strict=True)) if view_rows else []
            out[view] = {
                name: list(columns[j]) if columns else [] for j, name in enumerate(layout.features)
            }
        return out

    def warm_items(self, item_ids: Iterable[str], *, chunk: int = 2000) -> int:
        """Fill the item cache (at start-up); returns how many rows were read."""
        if self.item_view is None or self.item_cache_s <= 0:
            return 0
        ids = list(item_ids)
        for start in range(0, len(ids), chunk):
            self.read({self.item_view: ids[start : start + chunk]}, use_cache=False)
        return len(ids)

    def ping(self) -> bool:
        """Whether Redis answers now (used by readiness and recovery)."""
        import redis

        try:
            return bool(self.client.ping())
        except (redis.RedisError, OSError):
            return False


def as_arrays(columns: Mapping[str, list[Any]]) -> dict[str, np.ndarray]:
    """Feature columns as arrays: numbers as float64 with NaN for missing, text as object."""
    arrays: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        if any(isinstance(v, str) for v in values):
            arrays[name] = np.array(values, dtype=object)
        else:
            arrays[name] = np.array(
                [np.nan if v is None else float(v) for v in values], dtype=np.float64
            )
    return arrays


def make_client(redis_url: str, *, budget_ms: float) -> redis.Redis:
    """A redis-py client that gives up after ``budget_ms`` and never retries on its own."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeout = budget_ms / 1000.0
    return redis.Redis.from_url(
        redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        max_connections=64,
    )
