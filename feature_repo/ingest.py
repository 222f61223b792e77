"""Ingest the Online Retail log: validate, normalise, classify, and account for every row.

Each input row ends in exactly one place: the events table (purchases and cancellations)
or the quarantine table, with the reason it was set aside. The report's ``rows_read``
always equals ``rows_loaded + rows_set_aside``.

Re-running is idempotent: a source file whose content hash is already in the manifest is
skipped, and a new daily file appends that day alone. Output is staged and moved into
place only after every new file has been read, so a bad file stops the run before
anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from feature_repo import schema as S
from feature_repo.config import UCI_DOWNLOAD_URL, Paths
from feature_repo.errors import IngestError

logger = logging.getLogger(__name__)

QUARANTINE_COLUMNS: tuple[str, ...] = (
    *S.RAW_COLUMNS,
    S.SOURCE_FILE,
    S.SOURCE_LINE,
    S.REASON,
    S.DETAIL,
)
_INVOICE_PATTERN = r"^[0-9]{6,7}$"
_CANCEL_PATTERN = r"^C[0-9]{6,7}$"
_ADJUST_PATTERN = r"^A[0-9]{6,7}$"
# Quarantined rows whose time cannot be read are filed under this day.
UNKNOWN_DAY = date(1970, 1, 1)


@dataclass
class IngestReport:
    """Row accounting of the whole ingested log (not only of the latest run)."""

    rows_read: int = 0
    rows_loaded: int = 0
    rows_set_aside: int = 0
    set_aside_by_reason: dict[str, int] = field(default_factory=dict)
    loaded_by_event_type: dict[str, int] = field(default_factory=dict)
    n_users: int = 0
    n_items: int = 0
    n_sessions: int = 0
    n_guest_sessions: int = 0
    n_days: int = 0
    first_event: str | None = None
    last_event: str | None = None
    files_total: int = 0
    files_new: int = 0
    files_skipped: int = 0

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_set_aside

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "balanced": self.balanced}


# ---------------------------------------------------------------------------------------
# Reading sources


def list_sources(raw_path: Path) -> list[Path]:
    """The CSV files under ``raw_path``, or ``raw_path`` itself (a CSV or the UCI .xlsx)."""
    raw_path = Path(raw_path)
    if not raw_path.exists():
        raise IngestError(
            f"The raw data path {str(raw_path)!r} does not exist.\n"
            "Hint: set SHELFWISE_RAW_DIR (or pass --raw) to the folder of daily CSVs, or "
            f"download the UCI Online Retail .xlsx from {UCI_DOWNLOAD_URL} and point at it."
        )
    if raw_path.is_file():
        return [raw_path]
    files: list[Path] = []
    skipped: list[Path] = []
    for p in sorted(raw_path.iterdir()):
        wanted = p.suffix.lower() in (".csv", ".xlsx") and p.is_file()
        # Hidden files (editor backups, macOS "._" resource forks) are never data.
        (files if wanted and not p.name.startswith(".") else skipped).append(p)
    if skipped:
        logger.info(
            "ingest: skipping %d entr(y/ies) that are not .csv or .xlsx files: %s",
            len(skipped),
            ", ".join(p.name for p in skipped[:5]),
        )
    if not files:
        raise IngestError(
            f"The raw data folder {str(raw_path)!r} holds no .csv or .xlsx file.\n"
            "Hint: point SHELFWISE_RAW_DIR at the by-day folder of the Online Retail log."
        )
    return files


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise IngestError(
            f"{path}: line {line}: byte {data[exc.start]:#04x} is not valid UTF-8.\n"
            "Hint: convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`."
        ) from exc


def _check_header(path: Path, header: Sequence[str]) -> None:
    header = [h.strip() for h in header]
    missing = [c for c in S.RAW_COLUMNS if c not in header]
    if missing:
        raise IngestError(
            f"{path}: line 1: missing column(s) {missing}; found {header}.\n"
            f"Hint: the Online Retail header is {','.join(S.RAW_COLUMNS)}."
        )


def read_csv_source(path: Path) -> tuple[pl.DataFrame, int]:
    """Read one CSV as text columns with its line numbers.

    Returns the frame (raw columns, ``source_file``, ``source_line``, and ``detail``
    holding a parse problem or null) and the number of data rows read. Rows that cannot be
    split into the header's fields come back with every raw column null and ``detail``
    saying why, so they are quarantined rather than lost.
    """
    data = path.read_bytes()
    if not data.strip():
        raise IngestError(f"{path}: the file is empty (no header, no rows).")
    text = _decode(path, data)
    header_line = text.split("\n", 1)[0].rstrip("\r")
    header = [h.strip() for h in next(csv.reader([header_line]))]
    _check_header(path, header)
    physical = [line.removesuffix("\r") for line in text.split("\n")[1:]]
    if physical and physical[-1] == "":
        physical.pop()

    # Fast path: when every line is non-empty and has the header's number of fields
    # (commas outside quotes), polars reads the file in one go. Polars pads a short line
    # with nulls instead of failing, so the count is checked first.
    lines = pl.Series(physical, dtype=pl.String)
    commas = lines.str.replace_all(r'"[^"]*"', "").str.count_matches(",")
    if lines.len() > 0 and bool((commas == len(header) - 1).all()):
        try:
            frame = pl.read_csv(
                io.BytesIO(text.encode()),
                infer_schema=False,
                new_columns=header,
                truncate_ragged_lines=False,
                raise_if_empty=False,
            ).select(S.RAW_COLUMNS)
        except pl.exceptions.PolarsError as exc:
            logger.debug("%s: fast CSV read failed (%s); reading line by line", path, exc)
        else:
            if frame.height == lines.len():
                frame = frame.with_columns(
                    pl.lit(path.name).alias(S.SOURCE_FILE),
                    (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias(S.SOURCE_LINE),
                    pl.lit(None, dtype=pl.String).alias(S.DETAIL),
                )
                return frame, frame.height

    # Slow path: the csv module keeps every record with its line number. A record with the
    # wrong field count sets aside each physical line it spans, with the line's full text,
    # so an unbalanced quote cannot swallow lines unseen.
    index = {name: header.index(name) for name in S.RAW_COLUMNS}
    rows: list[dict[str, object]] = []

    def keep(record: list[str], line: int) -> None:
        row: dict[str, object] = {c: record[i] for c, i in index.items()}
        rows.append(row | {S.SOURCE_FILE: path.name, S.SOURCE_LINE: line, S.DETAIL: None})

    def set_aside(line: int, why: str) -> None:
        row: dict[str, object] = dict.fromkeys(S.RAW_COLUMNS)
        detail = f"{why}: {physical[line - 2]}"
        rows.append(row | {S.SOURCE_FILE: path.name, S.SOURCE_LINE: line, S.DETAIL: detail})

    def per_line() -> None:
        rows.clear()
        for line, content in enumerate(physical, start=2):
            if not content.strip():
                continue
            try:
                record = next(csv.reader([content]))
            except (csv.Error, StopIteration) as line_exc:
                set_aside(line, f"cannot split the line: {line_exc}")
                continue
            if len(record) == len(header):
                keep(record, line)
            else:
                set_aside(line, f"expected {len(header)} fields, got {len(record)}")

    if any("\r" in content for content in physical):
        # A stray carriage return: the csv module would count it as a line break and
        # lose the line numbers, so each physical line is read on its own.
        logger.warning("%s: a carriage return inside a line; reading each line alone", path)
        per_line()
    else:
        try:
            reader = csv.reader(io.StringIO(text, newline=""))
            next(reader)
            last = reader.line_num
            for record in reader:
                first, last = last + 1, reader.line_num
                if not record:
                    continue
                if len(record) == len(header):
                    keep(record, first)
                    continue
                for line in range(first, last + 1):
                    if physical[line - 2].strip():
                        span = "" if first == last else f" (record spans lines {first}-{last})"
                        set_aside(line, f"expected {len(header)} fields, got {len(record)}{span}")
        except csv.Error as exc:
            logger.warning("%s: %s; reading each line on its own", path, exc)
            per_line()
    schema = {c: pl.String for c in S.RAW_COLUMNS} | {
        S.SOURCE_FILE: pl.String,
        S.SOURCE_LINE: pl.Int64,
        S.DETAIL: pl.String,
    }
    if not rows:
        return pl.DataFrame(schema=schema), 0
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return frame, frame.height


def read_xlsx_source(path: Path) -> tuple[pl.DataFrame, int]:
    """Read the UCI ``Online Retail.xlsx`` into the same text frame as a CSV."""
    try:
        frame = pl.read_excel(path, engine="openpyxl", infer_schema_length=0)
    except Exception as exc:
        raise IngestError(f"{path}: cannot read the workbook: {exc}") from exc
    _check_header(path, frame.columns)
    frame = frame.select(
        [
            pl.col(c).cast(pl.String).str.replace(r"T", " ").alias(c)
            if c == S.RAW_INVOICE_DATE
            else pl.col(c).cast(pl.String)
            for c in S.RAW_COLUMNS
        ]
    ).with_columns(
        # openpyxl gives datetimes as ISO text; keep seconds precision like the CSVs.
        pl.col(S.RAW_INVOICE_DATE).str.slice(0, 19),
        pl.lit(path.name).alias(S.SOURCE_FILE),
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias(S.SOURCE_LINE),
        pl.lit(None, dtype=pl.String).alias(S.DETAIL),
    )
    return frame, frame.height


def read_source(path: Path) -> tuple[pl.DataFrame, int]:
    if path.suffix.lower() == ".xlsx":
        return read_xlsx_source(path)
    return read_csv_source(path)


# ---------------------------------------------------------------------------------------
# Normalising and classifying


MAX_ABS_QUANTITY = 10_000_000
MAX_UNIT_PRICE = 100_000.0
ROW_HASH = "row_hash"


def row_hash(raw: pl.DataFrame) -> pl.Series:
    """A hash of a row's raw columns (trimmed), to find exact duplicates across runs."""
    return raw.select(
        pl.struct(pl.col(S.RAW_COLUMNS).str.strip_chars()).hash(seed=20101201).alias(ROW_HASH)
    )[ROW_HASH]


def classify(
    raw: pl.DataFrame, *, known_hashes: pl.Series | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split raw text rows into ``(events, quarantine)``.

    Every input row lands in exactly one of the two frames. Rules are applied in order and
    the first one broken gives the row's ``reason`` and its ``detail``.

    Parameters
    ----------
    raw
        Text columns of the raw log plus ``source_file``, ``source_line`` and ``detail``
        (set for lines that could not be split into fields).
    known_hashes
        Row hashes already ingested by earlier runs: rows with one of them are duplicates.
    """
    trimmed = raw.with_columns(
        pl.col(S.RAW_COLUMNS).str.strip_chars(),
        row_hash(raw),
    ).with_columns(
        pl.col(S.RAW_STOCK_CODE).str.to_uppercase().alias("_item"),
        pl.col(S.RAW_INVOICE).str.to_uppercase().alias("_invoice"),
        pl.col(S.RAW_QUANTITY).str.to_integer(strict=False).alias("_qty"),
        pl.col(S.RAW_UNIT_PRICE).cast(pl.Float64, strict=False).alias("_price"),
        _utc(
            pl.col(S.RAW_INVOICE_DATE).str.to_datetime(
                S.RAW_TIME_FORMAT, strict=False, time_unit="us"
            )
        ).alias("_ts"),
        # CustomerID arrives as a float ("17850.0"): keep the integer part as text.
        pl.col(S.RAW_CUSTOMER_ID).str.replace(r"\.0+$", "").replace("", None).alias("_user"),
    )
    inv, item, qty, price = pl.col("_invoice"), pl.col("_item"), pl.col("_qty"), pl.col("_price")
    is_cancel = inv.str.contains(_CANCEL_PATTERN)
    non_product = item.is_in(list(S.NON_PRODUCT_CODES))
    for prefix in S.NON_PRODUCT_PREFIXES:
        non_product = non_product | item.str.starts_with(prefix)
    raw_col = pl.col

    # The first of a group of identical rows is kept; the others name it. Rows are
    # compared by the 64-bit hash of their raw columns (a false match between two
    # different rows has a chance of about n^2 / 2^65, under 1e-8 for the whole log).
    is_first = pl.col(ROW_HASH).is_first_distinct()
    is_dup_expr = ~is_first
    if known_hashes is not None and known_hashes.len():
        is_dup_expr = is_dup_expr | pl.col(ROW_HASH).is_in(known_hashes.implode())
    trimmed = trimmed.with_columns(
        is_dup_expr.alias("_is_dup"),
        is_first.alias("_is_first"),
        pl.col(S.SOURCE_FILE).first().over(ROW_HASH).alias("_first_file"),
        pl.col(S.SOURCE_LINE).first().over(ROW_HASH).alias("_first_line"),
    )
    is_dup = pl.col("_is_dup")
    dup_detail = (
        pl.when(pl.col("_is_first"))
        .then(pl.lit("same row as one ingested by an earlier run"))
        .otherwise(pl.format("same as {} line {}", pl.col("_first_file"), pl.col("_first_line")))
    )

    rules: list[tuple[pl.Expr, str, pl.Expr]] = [
        (pl.col(S.DETAIL).is_not_null(), S.REASON_MALFORMED, pl.col(S.DETAIL)),
        (inv.is_null() | (inv == ""), S.REASON_MISSING_FIELD, pl.lit("InvoiceNo is empty")),
        (item.is_null() | (item == ""), S.REASON_MISSING_FIELD, pl.lit("StockCode is empty")),
        (
            inv.str.contains(_ADJUST_PATTERN),
            S.REASON_ADJUSTMENT,
            pl.format("invoice {} is an accounting adjustment", raw_col(S.RAW_INVOICE)),
        ),
        (
            ~inv.str.contains(_INVOICE_PATTERN) & ~is_cancel,
            S.REASON_INVALID_INVOICE,
            pl.format("InvoiceNo {} is not 6-7 digits, optionally after C", raw_col(S.RAW_INVOICE)),
        ),
        (
            raw_col(S.RAW_INVOICE_DATE).is_null() | (raw_col(S.RAW_INVOICE_DATE) == ""),
            S.REASON_INVALID_DATE,
            pl.lit("InvoiceDate is empty"),
        ),
        (
            pl.col("_ts").is_null(),
            S.REASON_INVALID_DATE,
            pl.format(
                "cannot read InvoiceDate {} as {}",
                raw_col(S.RAW_INVOICE_DATE),
                pl.lit(S.RAW_TIME_FORMAT),
            ),
        ),
        (
            qty.is_null(),
            S.REASON_INVALID_QUANTITY,
            pl.format("Quantity {} is not an integer", raw_col(S.RAW_QUANTITY)),
        ),
        (qty == 0, S.REASON_INVALID_QUANTITY, pl.lit("Quantity is 0")),
        (
            qty.abs() > MAX_ABS_QUANTITY,
            S.REASON_INVALID_QUANTITY,
            pl.format(
                "Quantity {} is beyond +-{}", raw_col(S.RAW_QUANTITY), pl.lit(MAX_ABS_QUANTITY)
            ),
        ),
        (
            price.is_null(),
            S.REASON_INVALID_PRICE,
            pl.format("UnitPrice {} is not a number", raw_col(S.RAW_UNIT_PRICE)),
        ),
        (
            ~price.is_finite() | (price > MAX_UNIT_PRICE),
            S.REASON_INVALID_PRICE,
            pl.format(
                "UnitPrice {} is not finite or above {}",
                raw_col(S.RAW_UNIT_PRICE),
                pl.lit(MAX_UNIT_PRICE),
            ),
        ),
        (
            price < 0,
            S.REASON_INVALID_PRICE,
            pl.format("UnitPrice {} is negative", raw_col(S.RAW_UNIT_PRICE)),
        ),
        (
            pl.col("_user").is_not_null() & ~pl.col("_user").str.contains(r"^[0-9]{1,12}$"),
            S.REASON_INVALID_CUSTOMER,
            pl.format("CustomerID {} is not a whole number", raw_col(S.RAW_CUSTOMER_ID)),
        ),
        (
            non_product,
            S.REASON_NON_PRODUCT,
            pl.format("StockCode {} is a fee, postage or admin line", item),
        ),
        (is_dup, S.REASON_DUPLICATE, dup_detail),
        (
            is_cancel & (qty > 0),
            S.REASON_CANCEL_POSITIVE,
            pl.format("cancellation {} has positive Quantity {}", inv, qty),
        ),
        (
            ~is_cancel & (qty < 0),
            S.REASON_STOCK_CORRECTION,
            pl.format("Quantity {} is negative outside a cancellation", qty),
        ),
        (~is_cancel & (price == 0), S.REASON_ZERO_PRICE, pl.lit("UnitPrice is 0 on a sale")),
    ]
    # The reason is decided on every row; the detail text is built for the few rows set
    # aside only.
    reason: Any = pl
    detail: Any = pl
    for condition, name, text in rules:
        reason = reason.when(condition.fill_null(False)).then(pl.lit(name))
        detail = detail.when(condition.fill_null(False)).then(text)
    labelled = trimmed.with_columns(
        reason.otherwise(pl.lit(None, dtype=pl.String)).alias(S.REASON),
    )
    aside = labelled.filter(pl.col(S.REASON).is_not_null()).with_columns(
        detail.otherwise(pl.lit(None, dtype=pl.String)).alias("_detail"),
    )

    quarantine = aside.select(
        *[pl.col(c) for c in S.RAW_COLUMNS],
        pl.col(S.SOURCE_FILE),
        pl.col(S.SOURCE_LINE),
        pl.col(S.REASON),
        pl.col("_detail").alias(S.DETAIL),
        pl.col(ROW_HASH),
        # Rows without a readable time are kept under the epoch day.
        pl.col("_ts").dt.date().fill_null(UNKNOWN_DAY).alias(S.DAY),
    )
    kept = labelled.filter(pl.col(S.REASON).is_null())
    events = kept.select(
        pl.col("_user").alias(S.USER_ID),
        pl.col("_invoice").alias(S.SESSION_ID),
        pl.col("_item").alias(S.ITEM_ID),
        pl.when(is_cancel)
        .then(pl.lit(S.CANCELLATION))
        .otherwise(pl.lit(S.PURCHASE))
        .alias(S.EVENT_TYPE),
        qty.abs().cast(pl.Int32).alias(S.QUANTITY),
        price.alias(S.PRICE),
        pl.col(S.RAW_COUNTRY).replace("", None).alias(S.COUNTRY),
        pl.col("_ts").alias(S.EVENT_TIMESTAMP),
        pl.col(S.RAW_DESCRIPTION).replace("", None).alias("description"),
        pl.col(ROW_HASH),
        pl.col(S.SOURCE_FILE),
    ).with_columns(pl.col(S.EVENT_TIMESTAMP).dt.date().alias(S.DAY))
    return events, quarantine


def _utc(local: pl.Expr) -> pl.Expr:
    """Shop-local naive times to tz-aware UTC with microsecond precision.

    A time in the hour skipped when clocks go forward is read one hour later (as a clock
    that was not yet changed would show it); in the hour that repeats when they go back,
    the earlier (summer-time) instant is taken.
    """

    def convert(expr: pl.Expr) -> pl.Expr:
        return expr.dt.replace_time_zone(
            S.SHOP_TIME_ZONE, ambiguous="earliest", non_existent="null"
        ).dt.convert_time_zone("UTC")

    # Only a time in the skipped hour converts to null; it is read one hour later.
    return convert(local).fill_null(convert(local + pl.duration(hours=1))).dt.cast_time_unit("us")


# ---------------------------------------------------------------------------------------
# Writing


def _part_name(source_file: str) -> str:
    """The Parquet file name a source file's rows get inside each day partition."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", source_file) + ".parquet"


def _write_partitions(frame: pl.DataFrame, root: Path) -> list[str]:
    """Write ``frame`` as ``root/day=YYYY-MM-DD/<source file>.parquet``; returns the
    written paths relative to ``root``. Each source file owns its own part files, so a
    later file that touches the same day adds to it instead of replacing it."""
    written = []
    groups = frame.partition_by([S.DAY, S.SOURCE_FILE], as_dict=True, maintain_order=True)
    for (day, source), part in groups.items():
        relative = Path(f"{S.DAY}={day}") / _part_name(str(source))
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        part.drop(S.DAY).write_parquet(root / relative, statistics=True)
        written.append(str(relative))
    return written


def _load_manifest(paths: Paths) -> dict[str, dict[str, Any]]:
    if not paths.ingest_manifest.exists():
        if any(paths.events.glob("*/*.parquet")):
            raise IngestError(
                f"{paths.events} holds events but {paths.ingest_manifest} is missing.\n"
                f"Hint: remove {paths.data_dir} and ingest again."
            )
        return {}
    try:
        manifest: dict[str, dict[str, Any]] = json.loads(paths.ingest_manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IngestError(
            f"{paths.ingest_manifest}: not a readable manifest ({exc}).\n"
            f"Hint: remove {paths.data_dir} and ingest again."
        ) from exc
    if any(not isinstance(m, dict) or "parts" not in m for m in manifest.values()):
        raise IngestError(
            f"{paths.ingest_manifest} was written by an older layout.\n"
            f"Hint: remove {paths.data_dir} and ingest again."
        )
    return manifest


EVENTS_SCHEMA: dict[str, pl.DataType] = {
    S.USER_ID: pl.String(),
    S.SESSION_ID: pl.String(),
    S.ITEM_ID: pl.String(),
    S.EVENT_TYPE: pl.String(),
    S.QUANTITY: pl.Int32(),
    S.PRICE: pl.Float64(),
    S.COUNTRY: pl.String(),
    S.EVENT_TIMESTAMP: pl.Datetime("us", "UTC"),
    "description": pl.String(),
    ROW_HASH: pl.UInt64(),
    S.SOURCE_FILE: pl.String(),
    S.DAY: pl.Date(),
}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    **{c: pl.String() for c in S.RAW_COLUMNS},
    S.SOURCE_FILE: pl.String(),
    S.SOURCE_LINE: pl.Int64(),
    S.REASON: pl.String(),
    S.DETAIL: pl.String(),
    ROW_HASH: pl.UInt64(),
    S.DAY: pl.Date(),
}


def _scan(root: Path, schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    if not any(root.glob("*/*.parquet")):
        return pl.LazyFrame(schema=schema)
    return pl.scan_parquet(root / "**" / "*.parquet", hive_partitioning=True).with_columns(
        pl.col(S.DAY).cast(pl.Date)
    )


def scan_events(paths: Paths) -> pl.LazyFrame:
    """All ingested events as a lazy frame, with their ``day`` partition column."""
    return _scan(paths.events, EVENTS_SCHEMA)


def scan_quarantine(paths: Paths) -> pl.LazyFrame:
    """Every set-aside row with its ``reason``, ``source_file`` and ``source_line``."""
    return _scan(paths.quarantine, QUARANTINE_SCHEMA)


def build_items(paths: Paths, descriptions: pl.DataFrame | None = None) -> pl.DataFrame:
    """The items table from every ingested purchase.

    The canonical title is the description seen on most purchase rows (ties go to the most
    recent). Price statistics come from purchases only.
    """
    events = scan_events(paths).filter(pl.col(S.EVENT_TYPE) == S.PURCHASE)
    titles = (
        events.filter(pl.col("description").is_not_null())
        .group_by(S.ITEM_ID, "description")
        .agg(pl.len().alias("_n"), pl.col(S.EVENT_TIMESTAMP).max().alias("_last"))
        .sort([S.ITEM_ID, "_n", "_last"], descending=[False, True, True])
        .group_by(S.ITEM_ID, maintain_order=True)
        .first()
        .select(S.ITEM_ID, pl.col("description").alias(S.TITLE))
    )
    stats = events.group_by(S.ITEM_ID).agg(
        pl.col(S.PRICE).mean().alias(S.PRICE_MEAN),
        pl.col(S.PRICE).min().alias(S.PRICE_MIN),
        pl.col(S.PRICE).max().alias(S.PRICE_MAX),
        pl.col(S.PRICE).median().alias(S.PRICE_MEDIAN),
        pl.col(S.EVENT_TIMESTAMP).min().alias(S.FIRST_SALE),
        pl.col(S.EVENT_TIMESTAMP).max().alias(S.LAST_SALE),
        pl.len().cast(pl.Int64).alias(S.N_PURCHASES),
    )
    items = (
        stats.join(titles, on=S.ITEM_ID, how="left")
        .with_columns(pl.col(S.TITLE).fill_null(pl.col(S.ITEM_ID)))
        .sort(S.ITEM_ID)
        .collect()
    )
    items.write_parquet(paths.items)
    return items


def build_report(paths: Paths, manifest: dict[str, dict[str, object]]) -> IngestReport:
    events = scan_events(paths)
    quarantine = scan_quarantine(paths)
    ev = events.select(
        pl.len().alias("n"),
        pl.col(S.USER_ID).n_unique().alias("users"),
        pl.col(S.ITEM_ID).n_unique().alias("items"),
        pl.col(S.SESSION_ID).n_unique().alias("sessions"),
        pl.col(S.SESSION_ID).filter(pl.col(S.USER_ID).is_null()).n_unique().alias("guests"),
        pl.col(S.DAY).n_unique().alias("days"),
        pl.col(S.EVENT_TIMESTAMP).min().alias("first"),
        pl.col(S.EVENT_TIMESTAMP).max().alias("last"),
        pl.col(S.USER_ID).null_count().alias("null_users"),
    ).collect()
    by_type = events.group_by(S.EVENT_TYPE).len().collect()
    by_reason = quarantine.group_by(S.REASON).len().collect()
    row = ev.row(0, named=True)
    report = IngestReport(
        rows_read=sum(int(m["rows"]) for m in manifest.values()),  # type: ignore[call-overload]
        rows_loaded=int(row["n"]),
        rows_set_aside=int(by_reason["len"].sum()),
        set_aside_by_reason=dict(sorted(zip(by_reason[S.REASON], by_reason["len"], strict=True))),
        loaded_by_event_type=dict(sorted(zip(by_type[S.EVENT_TYPE], by_type["len"], strict=True))),
        # n_unique counts the null of guest rows as one value.
        n_users=int(row["users"]) - (1 if row["null_users"] else 0),
        n_items=int(row["items"]),
        n_sessions=int(row["sessions"]),
        n_guest_sessions=int(row["guests"]),
        n_days=int(row["days"]),
        first_event=row["first"].isoformat() if row["first"] else None,
        last_event=row["last"].isoformat() if row["last"] else None,
        files_total=len(manifest),
    )
    return report


def ingest(raw_path: Path, paths: Paths, *, progress: bool = False) -> IngestReport:
    """Ingest every new or changed source file under ``raw_path`` into ``paths``.

    Parameters
    ----------
    raw_path
        Folder of daily CSVs, one CSV, or the UCI ``.xlsx``.
    paths
        Where the events, quarantine, items table, manifest and report are written.
    progress
        Show a progress bar while reading files.

    Returns
    -------
    IngestReport
        Accounting of everything ingested so far, the latest run included.
    """
    sources = list_sources(raw_path)
    try:
        paths.data_dir.mkdir(parents=True, exist_ok=True)
        return _ingest(sources, paths, progress=progress)
    except OSError as exc:
        raise IngestError(
            f"cannot read or write the data: {exc}.\n"
            f"Hint: check that {paths.data_dir} is a writable folder (SHELFWISE_DATA_DIR)."
        ) from exc


def _ingest(sources: list[Path], paths: Paths, *, progress: bool) -> IngestReport:
    manifest = _load_manifest(paths)

    # Find the files that are new or changed since the last run; a file whose content
    # was already ingested under another name is read like a new one and its rows end up
    # set aside as duplicates.
    todo: list[tuple[Path, str]] = []
    for src in sources:
        digest = file_digest(src)
        if manifest.get(src.name, {}).get("sha256") != digest:
            todo.append((src, digest))
    logger.info("ingest: %d source file(s), %d new or changed", len(sources), len(todo))

    # Read and classify everything before writing anything.
    frames: list[pl.DataFrame] = []
    counts: dict[str, int] = {}
    iterator: Iterable[tuple[Path, str]] = todo
    if progress and todo:
        from tqdm.auto import tqdm

        iterator = tqdm(todo, desc="reading", unit="file")
    for src, _ in iterator:
        frame, n = read_source(src)
        frames.append(frame)
        counts[src.name] = n
    if frames:
        raw = pl.concat(frames, how="vertical")
        changed = {src.name for src, _ in todo}
        replaced = {
            table: [
                root / part
                for name in changed
                for part in manifest.get(name, {}).get("parts", {}).get(table, [])
            ]
            for table, root in (("events", paths.events), ("quarantine", paths.quarantine))
        }
        events, quarantine = classify(raw, known_hashes=_known_hashes(paths, replaced))
        if events.height + quarantine.height != raw.height:
            raise IngestError(
                f"row accounting broke: read {raw.height}, loaded {events.height}, "
                f"set aside {quarantine.height}."
            )

        # Stage the new part files, then move them into place and record the files last:
        # a crash before the manifest is written makes the next run redo these files.
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=paths.data_dir))
        parts: dict[str, dict[str, list[str]]] = {name: {} for name in changed}
        try:
            for table, frame in (("events", events), ("quarantine", quarantine)):
                written = _write_partitions(frame, staging / table)
                for relative in written:
                    name = next(f for f in changed if relative.endswith("/" + _part_name(f)))
                    parts[name].setdefault(table, []).append(relative)
            for table, root in (("events", paths.events), ("quarantine", paths.quarantine)):
                for old in replaced[table]:
                    old.unlink(missing_ok=True)
                for part in sorted((staging / table).glob(f"{S.DAY}=*/*.parquet")):
                    target = root / part.parent.name / part.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    part.replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for src, digest in todo:
            manifest[src.name] = {
                "sha256": digest,
                "rows": counts[src.name],
                "parts": parts[src.name],
                "ingested_at": datetime.now(UTC).isoformat(),
            }
        tmp = paths.ingest_manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.replace(paths.ingest_manifest)
        build_items(paths)
        logger.info(
            "ingest: wrote %d part file(s)", sum(len(v) for p in parts.values() for v in p.values())
        )

    if not manifest:
        raise IngestError("nothing was ingested: no source file was read.")
    report = build_report(paths, manifest)
    report.files_new = len(todo)
    report.files_skipped = len(sources) - len(todo)
    paths.ingest_report.write_text(json.dumps(report.to_json(), indent=2))
    if not report.balanced:
        raise IngestError(
            f"row accounting does not add up: read {report.rows_read}, loaded "
            f"{report.rows_loaded}, set aside {report.rows_set_aside}.\n"
            f"Hint: remove {paths.data_dir} and ingest again."
        )
    return report


def _known_hashes(paths: Paths, replaced: dict[str, list[Path]]) -> pl.Series | None:
    """Row hashes of everything already ingested, except the parts about to be replaced."""
    skip = {str(p) for files in replaced.values() for p in files}
    files = [
        p
        for root in (paths.events, paths.quarantine)
        for p in root.glob("*/*.parquet")
        if str(p) not in skip
    ]
    if not files:
        return None
    return pl.concat([pl.scan_parquet(p).select(ROW_HASH) for p in files]).collect()[ROW_HASH]


def format_report(report: IngestReport) -> str:
    """The report as a plain-text table for the terminal."""
    lines = [
        "Ingest report",
        f"  {'rows read':<34}{report.rows_read:>10,}",
        f"  {'rows loaded as events':<34}{report.rows_loaded:>10,}",
    ]
    for kind, n in report.loaded_by_event_type.items():
        lines.append(f"    {kind:<32}{n:>10,}")
    lines.append(f"  {'rows set aside':<34}{report.rows_set_aside:>10,}")
    for reason, n in sorted(report.set_aside_by_reason.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {reason:<32}{n:>10,}")
    check = "yes" if report.balanced else "NO"
    lines += [
        f"  {'read = loaded + set aside':<34}{check:>10}",
        f"  {'customers':<34}{report.n_users:>10,}",
        f"  {'items':<34}{report.n_items:>10,}",
        f"  {'sessions (invoices)':<34}{report.n_sessions:>10,}",
        f"  {'  of which guest':<34}{report.n_guest_sessions:>10,}",
        f"  {'days':<34}{report.n_days:>10,}",
        f"  {'files (new / already ingested)':<34}{report.files_new:>5} / {report.files_skipped}",
    ]
    return "\n".join(lines)
