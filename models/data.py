"""Events as the models see them: validated, cut at a point in time, netted per user and item.

Every retriever is fitted on the events strictly before a cut-off. The helpers here do
that cut, check the columns and id types once at the boundary, and turn purchases and
cancellations into one net quantity per ``(user_id, item_id)``: a cancellation reduces
what was bought, it never becomes a negative signal of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from feature_repo import schema as S
from feature_repo.config import Paths
from feature_repo.errors import BadRequestError, SchemaError

logger = logging.getLogger(__name__)

# Columns every model input frame must carry, with the dtype family each must have.
_REQUIRED: dict[str, type[pl.DataType] | tuple[type[pl.DataType], ...]] = {
    S.USER_ID: (pl.String, pl.Null),
    S.SESSION_ID: pl.String,
    S.ITEM_ID: pl.String,
    S.EVENT_TYPE: pl.String,
    S.QUANTITY: (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt16, pl.UInt32, pl.Float64),
    S.EVENT_TIMESTAMP: pl.Datetime,
}
# Guests have no user id; for counting distinct buyers a guest is its session.
BUYER = "_buyer"


def check_events(events: pl.DataFrame, *, what: str = "events") -> pl.DataFrame:
    """Check that ``events`` has the event columns with usable dtypes.

    A naive ``event_timestamp`` is taken as UTC (stated once, here). Ids must be strings:
    the retail log's numeric-looking ids are kept as text everywhere, so an integer id
    column means a caller skipped the ingest and is rejected rather than silently cast.

    Raises
    ------
    SchemaError
        When a column is missing or has the wrong dtype; the message names both.
    """
    for column, dtypes in _REQUIRED.items():
        if column not in events.columns:
            raise SchemaError(
                f"{what} lack the column {column!r}; found {events.columns}.\n"
                "Hint: read events with feature_repo.ingest.scan_events."
            )
        dtype = events.schema[column]
        allowed = dtypes if isinstance(dtypes, tuple) else (dtypes,)
        if not any(isinstance(dtype, t) or dtype == t for t in allowed):
            raise SchemaError(
                f"{what}[{column!r}] has dtype {dtype}; the rule is "
                f"{' or '.join(t.__name__ for t in allowed)}.\n"
                "Hint: ids are strings (cast with pl.col(...).cast(pl.String))."
            )
    if events.schema[S.EVENT_TIMESTAMP].time_zone is None:  # type: ignore[attr-defined]
        events = events.with_columns(pl.col(S.EVENT_TIMESTAMP).dt.replace_time_zone("UTC"))
    if events.schema[S.USER_ID] == pl.Null:
        events = events.with_columns(pl.col(S.USER_ID).cast(pl.String))
    return events


def check_id(value: object, *, name: str) -> str:
    """Return ``value`` if it is a ``str`` id, else raise naming the value and the rule."""
    if not isinstance(value, str):
        raise BadRequestError(
            f"{name}={value!r} has type {type(value).__name__}; the rule is that ids are "
            f"str.\nHint: pass str({value!r})."
        )
    return value


def check_ids(values: Iterable[object], *, name: str) -> list[str]:
    """Every element of ``values`` as a ``str`` id (see :func:`check_id`)."""
    if isinstance(values, str):
        raise BadRequestError(
            f"{name}={values!r} is one string; the rule is a sequence of str ids.\n"
            f"Hint: pass [{values!r}]."
        )
    return [check_id(v, name=f"{name}[{i}]") for i, v in enumerate(values)]


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive means UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def before(events: pl.DataFrame, cutoff: datetime | None, *, what: str = "events") -> pl.DataFrame:
    """The checked events strictly before ``cutoff`` (all of them when ``None``).

    Raises
    ------
    SchemaError
        When no purchase is left: a model cannot be fitted on an empty training window.
    """
    events = check_events(events, what=what)
    if cutoff is not None:
        events = events.filter(pl.col(S.EVENT_TIMESTAMP) < as_utc(cutoff))
    n_purchases = events.filter(pl.col(S.EVENT_TYPE) == S.PURCHASE).height
    if n_purchases == 0:
        where = f"before cutoff={cutoff.isoformat()}" if cutoff is not None else "given"
        raise SchemaError(
            f"The training window is empty: no purchase {where} ({events.height} rows left)."
            "\nHint: move the cut-off later or pass events that cover it."
        )
    return events


def window(events: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """Events in the half-open window ``[start, end)``."""
    return events.filter(
        (pl.col(S.EVENT_TIMESTAMP) >= as_utc(start)) & (pl.col(S.EVENT_TIMESTAMP) < as_utc(end))
    )


def with_buyer(events: pl.DataFrame) -> pl.DataFrame:
    """Add ``_buyer``: the user id, or ``"session:<id>"`` for a guest's basket."""
    return events.with_columns(
        pl.coalesce(pl.col(S.USER_ID), pl.lit("session:") + pl.col(S.SESSION_ID)).alias(BUYER)
    )


def net_user_items(events: pl.DataFrame) -> pl.DataFrame:
    """Net quantity, invoices and last purchase per known ``(user_id, item_id)``.

    Cancellations are subtracted from purchases first; pairs whose net quantity is not
    positive are dropped (a fully returned item is not something the user bought).

    Returns
    -------
    polars.DataFrame
        Columns ``user_id``, ``item_id``, ``net_quantity`` (int), ``n_invoices`` (int),
        ``last_purchase`` (datetime, UTC).
    """
    signed = pl.when(pl.col(S.EVENT_TYPE) == S.CANCELLATION).then(-1).otherwise(1)
    is_purchase = pl.col(S.EVENT_TYPE) == S.PURCHASE
    return (
        events.filter(pl.col(S.USER_ID).is_not_null())
        .group_by(S.USER_ID, S.ITEM_ID)
        .agg(
            (pl.col(S.QUANTITY).cast(pl.Int64) * signed).sum().alias("net_quantity"),
            pl.col(S.SESSION_ID).filter(is_purchase).n_unique().alias("n_invoices"),
            pl.col(S.EVENT_TIMESTAMP).filter(is_purchase).max().alias("last_purchase"),
        )
        .filter((pl.col("net_quantity") > 0) & pl.col("last_purchase").is_not_null())
        .sort(S.USER_ID, S.ITEM_ID)
    )


def baskets(events: pl.DataFrame) -> pl.DataFrame:
    """Distinct items per purchase session: ``session_id``, ``items`` (list of str)."""
    return (
        events.filter(pl.col(S.EVENT_TYPE) == S.PURCHASE)
        .group_by(S.SESSION_ID)
        .agg(pl.col(S.ITEM_ID).unique().sort().alias("items"))
        .sort(S.SESSION_ID)
    )


@dataclass(frozen=True)
class IdIndex:
    """A fixed mapping between string ids and row numbers ``0..n-1``."""

    ids: np.ndarray  # (n,) object array of str

    @classmethod
    def from_ids(cls, ids: Iterable[str]) -> IdIndex:
        return cls(np.asarray(sorted(set(ids)), dtype=object))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pos", {v: i for i, v in enumerate(self.ids.tolist())})

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, value: object) -> bool:
        return value in self._pos  # type: ignore[attr-defined]

    def get(self, value: str) -> int | None:
        return self._pos.get(value)  # type: ignore[attr-defined, no-any-return]

    def positions(self, values: Sequence[str]) -> tuple[np.ndarray, int]:
        """Row numbers of the known ``values`` and how many were unknown."""
        pos = [self._pos.get(v) for v in values]  # type: ignore[attr-defined]
        known = np.asarray([p for p in pos if p is not None], dtype=np.int64)
        return known, len(pos) - len(known)

    def __getstate__(self) -> dict[str, Any]:
        return {"ids": self.ids}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "ids", state["ids"])
        self.__post_init__()


def top_k(
    item_ids: np.ndarray,
    scores: np.ndarray,
    k: int,
    *,
    exclude: Collection[str] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(item_ids, scores)``, best first, ties broken by item id.

    Items in ``exclude`` and items with a non-finite score are dropped before cutting.
    """
    keep = np.isfinite(scores)
    if exclude:
        # A set lookup per item beats np.isin on object arrays by an order of magnitude.
        banned = exclude if isinstance(exclude, set | frozenset) else set(exclude)
        keep &= np.fromiter(
            (i not in banned for i in item_ids.tolist()), dtype=bool, count=len(item_ids)
        )
    # Sums of the same terms in another order differ in the last bits; rounding makes such
    # ties exact, so that the item id breaks them the same way on every run.
    item_ids, scores = item_ids[keep], np.round(scores[keep], 10)
    if len(scores) > k:
        # argpartition first: a full sort of a 4k catalogue per request is wasteful.
        part = np.argpartition(-scores, k - 1)[:k]
        item_ids, scores = item_ids[part], scores[part]
    order = np.lexsort((item_ids.astype(str), -scores))
    return item_ids[order], scores[order].astype(np.float64)


def empty_result() -> tuple[np.ndarray, np.ndarray]:
    return np.asarray([], dtype=object), np.asarray([], dtype=np.float64)


def data_fingerprint(paths: Paths, events: pl.DataFrame | None = None) -> str:
    """A short hash that changes when the ingested data changes.

    Built from the ingest manifest (the content hash of every source file) when there is
    one, else from the events' size and sums.
    """
    digest = hashlib.sha256()
    if paths.ingest_manifest.exists():
        manifest = json.loads(paths.ingest_manifest.read_text())
        digest.update(json.dumps(manifest, sort_keys=True, default=str).encode())
    if events is not None:
        row = events.select(
            pl.len().alias("rows"),
            pl.col(S.QUANTITY).cast(pl.Int64).sum().alias("units"),
            pl.col(S.EVENT_TIMESTAMP).min().cast(pl.String).alias("first"),
            pl.col(S.EVENT_TIMESTAMP).max().cast(pl.String).alias("last"),
        ).row(0)
        digest.update(repr(row).encode())
    return digest.hexdigest()[:16]
