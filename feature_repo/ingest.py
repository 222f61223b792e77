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
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

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
    files = sorted(p for p in raw_path.iterdir() if p.suffix.lower() in (".csv", ".xlsx"))
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
    header = next(csv.reader([header_line]))
    _check_header(path, header)

    # Fast path: when every line has the header's number of fields (commas outside quotes),
    # polars reads the file in one go. Polars pads a short line with nulls instead of
    # failing, so the count is checked first.
    lines = pl.Series(text.splitlines()[1:])
    lines = lines.filter(lines.str.len_bytes() > 0)
    commas = lines.str.replace_all(r'"[^"]*"', "").str.count_matches(",")
    if lines.len() > 0 and bool((commas == len(header) - 1).all()):
        try:
            frame = pl.read_csv(
                io.BytesIO(text.encode()),
                infer_schema=False,
                columns=list(S.RAW_COLUMNS),
                truncate_ragged_lines=False,
                raise_if_empty=False,
            )
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

    # Slow path: the csv module keeps every record with its line number; a record with the
    # wrong field count is kept as a malformed row.
    index = {name: header.index(name) for name in S.RAW_COLUMNS}
    rows: list[dict[str, object]] = []
    reader = csv.reader(io.StringIO(text))
    next(reader)
    line = reader.line_num
    for record in reader:
        start_line = line + 1
        line = reader.line_num
        if not record:
            continue
        row: dict[str, object] = {S.SOURCE_FILE: path.name, S.SOURCE_LINE: start_line}
        if len(record) != len(header):
            row.update({c: None for c in S.RAW_COLUMNS})
            row[S.DETAIL] = (
                f"expected {len(header)} fields, got {len(record)}: {','.join(record)[:200]}"
            )
        else:
            row.update({c: record[i] for c, i in index.items()})
            row[S.DETAIL] = None
        rows.append(row)
    schema = {c: pl.String for c in S.RAW_COLUMNS} | {
        S.SOURCE_FILE: pl.String,
        S.SOURCE_LINE: pl.Int64,
        S.DETAIL: pl.String,
    }
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


def classify(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split raw text rows into ``(events, quarantine)``.

    Every input row lands in exactly one of the two frames. Rules are applied in order and
    the first one broken gives the row's reason.
    """
    trimmed = raw.with_columns(
        pl.col(S.RAW_COLUMNS).str.strip_chars(),
    ).with_columns(
        pl.col(S.RAW_STOCK_CODE).str.to_uppercase().alias("_item"),
        pl.col(S.RAW_INVOICE).str.to_uppercase().alias("_invoice"),
        pl.col(S.RAW_QUANTITY).str.to_integer(strict=False).alias("_qty"),
        pl.col(S.RAW_UNIT_PRICE).cast(pl.Float64, strict=False).alias("_price"),
        pl.col(S.RAW_INVOICE_DATE)
        .str.to_datetime(S.RAW_TIME_FORMAT, strict=False, time_unit="us")
        .alias("_local"),
        # CustomerID arrives as a float ("17850.0"): keep the integer part as text.
        pl.col(S.RAW_CUSTOMER_ID).str.replace(r"\.0+$", "").replace("", None).alias("_user"),
    )
    inv = pl.col("_invoice")
    item = pl.col("_item")
    qty = pl.col("_qty")
    price = pl.col("_price")
    is_cancel = inv.str.contains(_CANCEL_PATTERN)
    non_product = item.is_in(list(S.NON_PRODUCT_CODES))
    for prefix in S.NON_PRODUCT_PREFIXES:
        non_product = non_product | item.str.starts_with(prefix)
    dup_cols = [*S.RAW_COLUMNS]
    # The first of a group of identical rows is kept; the others are duplicates.
    is_dup = ~pl.struct(dup_cols).is_first_distinct()
    reason = (
        pl.when(pl.col(S.DETAIL).is_not_null())
        .then(pl.lit(S.REASON_MALFORMED))
        .when(inv.is_null() | (inv == "") | item.is_null() | (item == ""))
        .then(pl.lit(S.REASON_MISSING_FIELD))
        .when(inv.str.contains(_ADJUST_PATTERN))
        .then(pl.lit(S.REASON_ADJUSTMENT))
        .when(~inv.str.contains(_INVOICE_PATTERN) & ~is_cancel)
        .then(pl.lit(S.REASON_INVALID_INVOICE))
        .when(pl.col("_local").is_null())
        .then(pl.lit(S.REASON_INVALID_DATE))
        .when(qty.is_null() | (qty == 0))
        .then(pl.lit(S.REASON_INVALID_QUANTITY))
        .when(price.is_null() | price.is_nan() | (price < 0))
        .then(pl.lit(S.REASON_INVALID_PRICE))
        .when(non_product)
        .then(pl.lit(S.REASON_NON_PRODUCT))
        .when(is_dup)
        .then(pl.lit(S.REASON_DUPLICATE))
        .when(is_cancel & (qty > 0))
        .then(pl.lit(S.REASON_CANCEL_POSITIVE))
        .when(~is_cancel & (qty < 0))
        .then(pl.lit(S.REASON_STOCK_CORRECTION))
        .when(~is_cancel & (price == 0))
        .then(pl.lit(S.REASON_ZERO_PRICE))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    detail = (
        pl.when(pl.col(S.DETAIL).is_not_null())
        .then(pl.col(S.DETAIL))
        .when(pl.col("_local").is_null() & pl.col(S.RAW_INVOICE_DATE).is_not_null())
        .then(
            pl.format(
                "cannot parse {} as {}", pl.col(S.RAW_INVOICE_DATE), pl.lit(S.RAW_TIME_FORMAT)
            )
        )
        .when(qty.is_null() & pl.col(S.RAW_QUANTITY).is_not_null())
        .then(pl.format("Quantity {} is not an integer", pl.col(S.RAW_QUANTITY)))
        .when(qty == 0)
        .then(pl.lit("Quantity is 0"))
        .when(price < 0)
        .then(pl.format("UnitPrice {} is negative", pl.col(S.RAW_UNIT_PRICE)))
        .when(price.is_null())
        .then(pl.format("UnitPrice {} is not a number", pl.col(S.RAW_UNIT_PRICE)))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    labelled = trimmed.with_columns(reason.alias(S.REASON), detail.alias("_detail"))

    quarantine = labelled.filter(pl.col(S.REASON).is_not_null()).select(
        *[pl.col(c) for c in S.RAW_COLUMNS],
        pl.col(S.SOURCE_FILE),
        pl.col(S.SOURCE_LINE),
        pl.col(S.REASON),
        pl.col("_detail").alias(S.DETAIL),
        _utc(pl.col("_local")).dt.date().fill_null(pl.date(1970, 1, 1)).alias(S.DAY),
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
        _utc(pl.col("_local")).alias(S.EVENT_TIMESTAMP),
        pl.col(S.RAW_DESCRIPTION).replace("", None).alias("description"),
        pl.col(S.SOURCE_FILE),
    ).with_columns(pl.col(S.EVENT_TIMESTAMP).dt.date().alias(S.DAY))
    return events, quarantine


def _utc(local: pl.Expr) -> pl.Expr:
    """Shop-local naive times to tz-aware UTC with microsecond precision.

    The hour that does not exist when clocks go forward is shifted forward; in the hour
    that repeats when they go back, the earlier (summer-time) instant is taken.
    """
    return (
        local.dt.replace_time_zone(S.SHOP_TIME_ZONE, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
        .dt.cast_time_unit("us")
    )


# ---------------------------------------------------------------------------------------
# Writing


def _write_partitions(frame: pl.DataFrame, root: Path, *, drop: Iterable[str] = ()) -> list[str]:
    days = []
    for (day,), part in frame.partition_by(S.DAY, as_dict=True, maintain_order=True).items():
        target = root / f"{S.DAY}={day}"
        target.mkdir(parents=True, exist_ok=True)
        part.drop([S.DAY, *drop]).write_parquet(target / "part-0.parquet", statistics=True)
        days.append(str(day))
    return days


def _load_manifest(paths: Paths) -> dict[str, dict[str, object]]:
    if not paths.ingest_manifest.exists():
        return {}
    return json.loads(paths.ingest_manifest.read_text())


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
    S.DAY: pl.Date(),
}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    **{c: pl.String() for c in S.RAW_COLUMNS},
    S.SOURCE_FILE: pl.String(),
    S.SOURCE_LINE: pl.Int64(),
    S.REASON: pl.String(),
    S.DETAIL: pl.String(),
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
    """Ingest every new source file under ``raw_path`` into ``paths``.

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
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(paths)

    # Find the files that are new or changed since the last run.
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
        events, quarantine = classify(raw)
        if events.height + quarantine.height != raw.height:
            raise IngestError(
                f"row accounting broke: read {raw.height}, loaded {events.height}, "
                f"set aside {quarantine.height}."
            )

        # Stage the new partitions, then move them into place and record the files last:
        # a crash before the manifest is written makes the next run redo these files.
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=paths.data_dir))
        try:
            days = set(_write_partitions(events, staging / "events", drop=[S.SOURCE_FILE]))
            days |= set(_write_partitions(quarantine, staging / "quarantine"))
            # A changed file replaces what it wrote before, in both tables.
            changed = {src.name for src, _ in todo}
            for table in ("events", "quarantine"):
                root = getattr(paths, table)
                for name in changed:
                    old_days: list[str] = manifest.get(name, {}).get("days", [])  # type: ignore[assignment]
                    for day in old_days:
                        shutil.rmtree(root / f"{S.DAY}={day}", ignore_errors=True)
                for part in sorted((staging / table).glob(f"{S.DAY}=*")):
                    target = root / part.name
                    if target.exists():
                        shutil.rmtree(target)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    part.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        per_file_days = _days_per_file(events, quarantine)
        for src, digest in todo:
            manifest[src.name] = {
                "sha256": digest,
                "rows": counts[src.name],
                "days": sorted(per_file_days.get(src.name, [])),
                "ingested_at": datetime.now(UTC).isoformat(),
            }
        tmp = paths.ingest_manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.replace(paths.ingest_manifest)
        build_items(paths)
        logger.info("ingest: wrote %d day partition(s)", len(days))

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


def _days_per_file(events: pl.DataFrame, quarantine: pl.DataFrame) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for frame in (events, quarantine):
        for name, day in frame.select(S.SOURCE_FILE, S.DAY).unique().iter_rows():
            out.setdefault(name, set()).add(str(day))
    return out


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
