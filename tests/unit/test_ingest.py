"""Ingest: normalising, classifying and accounting for every row, and rejecting bad files."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from feature_repo import schema as S
from feature_repo.config import Paths
from feature_repo.errors import IngestError
from feature_repo.ingest import ingest, scan_events, scan_quarantine

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"


def write_csv(folder: Path, name: str, rows: list[str], *, header: str = HEADER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def test_real_slice_accounting_adds_up(real_log_slice: Path, tmp_path: Path) -> None:
    """On real days of the log, read = loaded + set aside, per reason, and each quarantined
    row carries a known reason."""
    paths = Paths(tmp_path / "data")
    report = ingest(real_log_slice, paths)
    n_lines = sum(len(p.read_text().splitlines()) - 1 for p in real_log_slice.glob("*.csv"))
    assert report.rows_read == n_lines
    assert report.rows_loaded + report.rows_set_aside == report.rows_read
    assert sum(report.set_aside_by_reason.values()) == report.rows_set_aside
    quarantine = scan_quarantine(paths).collect()
    assert quarantine.height == report.rows_set_aside
    assert quarantine[S.REASON].null_count() == 0
    assert set(quarantine[S.REASON].unique()) <= set(S.REASONS)
    # The real log has duplicates, postage lines and cancellations in its first week.
    assert report.set_aside_by_reason[S.REASON_DUPLICATE] > 0
    assert report.set_aside_by_reason[S.REASON_NON_PRODUCT] > 0
    assert report.loaded_by_event_type[S.CANCELLATION] > 0
    saved = json.loads(paths.ingest_report.read_text())
    assert saved["balanced"] is True
    assert saved["rows_read"] == n_lines


def test_normalises_ids_and_converts_shop_time_to_utc(tmp_path: Path) -> None:
    """CustomerID floats become integer strings, codes are trimmed and upper-cased, and
    summer-time shop clocks are an hour ahead of UTC."""
    raw = tmp_path / "raw"
    write_csv(
        raw,
        "2011-06-01.csv",
        [
            "540001, 85123a ,  WHITE HANGING HEART ,6,2011-06-01 10:00:00,2.55,17850.0,"
            "United Kingdom",
            "540002,71053,WHITE METAL LANTERN,2,2011-06-01 11:30:00,3.39,,France",
        ],
    )
    write_csv(
        raw,
        "2011-01-10.csv",
        [
            "530001,71053,WHITE METAL LANTERN,1,2011-01-10 10:00:00,3.39,12345.0,France",
        ],
    )
    paths = Paths(tmp_path / "data")
    ingest(raw, paths)
    events = scan_events(paths).sort(S.EVENT_TIMESTAMP).collect()
    assert events[S.USER_ID].to_list() == ["12345", "17850", None]
    assert events[S.ITEM_ID].to_list() == ["71053", "85123A", "71053"]
    assert events.schema[S.EVENT_TIMESTAMP] == pl.Datetime("us", "UTC")
    assert events[S.EVENT_TIMESTAMP].to_list() == [
        datetime(2011, 1, 10, 10, tzinfo=UTC),  # winter: shop time is UTC
        datetime(2011, 6, 1, 9, tzinfo=UTC),  # summer: one hour ahead
        datetime(2011, 6, 1, 10, 30, tzinfo=UTC),
    ]
    items = pl.read_parquet(paths.items)
    assert items.filter(pl.col(S.ITEM_ID) == "85123A")[S.TITLE].item() == "WHITE HANGING HEART"
    # A guest basket keeps its session and has no user.
    guest = events.filter(pl.col(S.USER_ID).is_null())
    assert guest[S.SESSION_ID].to_list() == ["540002"]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (
            "A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,11062.06,,United Kingdom",
            S.REASON_ADJUSTMENT,
        ),
        ("536365,POST,POSTAGE,1,2011-01-10 09:00:00,18.00,12583.0,France", S.REASON_NON_PRODUCT),
        (
            "536366,gift_0001_20,Dotcomgiftshop Gift Voucher,1,2011-01-10 09:00:00,17.02,,UK",
            S.REASON_NON_PRODUCT,
        ),
        (
            "536367,85123A,HEART,-5,2011-01-10 09:00:00,0.0,,United Kingdom",
            S.REASON_STOCK_CORRECTION,
        ),
        (
            "C536368,85123A,HEART,5,2011-01-10 09:00:00,2.55,17850.0,United Kingdom",
            S.REASON_CANCEL_POSITIVE,
        ),
        (
            "536369,85123A,HEART,5,2011-01-10 09:00:00,0.0,17850.0,United Kingdom",
            S.REASON_ZERO_PRICE,
        ),
        (
            "536370,85123A,HEART,5,10/01/2011 09:00,2.55,17850.0,United Kingdom",
            S.REASON_INVALID_DATE,
        ),
        (
            "536371,85123A,HEART,five,2011-01-10 09:00:00,2.55,17850.0,United Kingdom",
            S.REASON_INVALID_QUANTITY,
        ),
        (
            "536372,85123A,HEART,0,2011-01-10 09:00:00,2.55,17850.0,United Kingdom",
            S.REASON_INVALID_QUANTITY,
        ),
        (
            "536373,85123A,HEART,1,2011-01-10 09:00:00,-2.55,17850.0,United Kingdom",
            S.REASON_INVALID_PRICE,
        ),
        (",85123A,HEART,1,2011-01-10 09:00:00,2.55,17850.0,United Kingdom", S.REASON_MISSING_FIELD),
        (
            "X536374,85123A,HEART,1,2011-01-10 09:00:00,2.55,17850.0,United Kingdom",
            S.REASON_INVALID_INVOICE,
        ),
    ],
)
def test_each_rule_sets_the_row_aside_with_its_reason(
    tmp_path: Path, row: str, reason: str
) -> None:
    """A row that breaks a rule lands in the quarantine with that rule's reason, next to a
    good row that is loaded."""
    raw = tmp_path / "raw"
    write_csv(
        raw,
        "2011-01-10.csv",
        [
            "536400,71053,WHITE METAL LANTERN,1,2011-01-10 10:00:00,3.39,12345.0,France",
            row,
        ],
    )
    paths = Paths(tmp_path / "data")
    report = ingest(raw, paths)
    assert report.rows_read == 2
    assert report.rows_loaded == 1
    assert report.set_aside_by_reason == {reason: 1}
    quarantined = scan_quarantine(paths).collect()
    assert quarantined[S.SOURCE_LINE].to_list() == [3]
    assert quarantined[S.SOURCE_FILE].to_list() == ["2011-01-10.csv"]


def test_cancellation_is_its_own_event_and_duplicates_are_set_aside(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    line = "536365,85123A,HEART,6,2011-01-10 08:26:00,2.55,17850.0,United Kingdom"
    write_csv(
        raw,
        "2011-01-10.csv",
        [
            line,
            line,
            line,
            "C536379,85123A,HEART,-2,2011-01-10 09:41:00,2.55,17850.0,United Kingdom",
        ],
    )
    paths = Paths(tmp_path / "data")
    report = ingest(raw, paths)
    assert report.set_aside_by_reason == {S.REASON_DUPLICATE: 2}
    assert report.loaded_by_event_type == {S.CANCELLATION: 1, S.PURCHASE: 1}
    events = scan_events(paths).collect()
    cancel = events.filter(pl.col(S.EVENT_TYPE) == S.CANCELLATION)
    assert cancel[S.QUANTITY].item() == 2  # units are positive; the type carries the sign


def test_malformed_line_is_quarantined_with_its_line_number(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_csv(
        raw,
        "2011-01-10.csv",
        [
            "536400,71053,WHITE METAL LANTERN,1,2011-01-10 10:00:00,3.39,12345.0,France",
            "536401,71053,BROKEN,1,2011-01-10 10:00:00",
            "536402,71053,WHITE METAL LANTERN,2,2011-01-10 10:05:00,3.39,12345.0,France",
        ],
    )
    paths = Paths(tmp_path / "data")
    report = ingest(raw, paths)
    assert (report.rows_read, report.rows_loaded, report.rows_set_aside) == (3, 2, 1)
    bad = scan_quarantine(paths).collect()
    assert bad[S.REASON].to_list() == [S.REASON_MALFORMED]
    assert bad[S.SOURCE_LINE].to_list() == [3]
    assert "expected 8 fields, got 5" in bad[S.DETAIL].item()


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_csv(
        raw,
        "2011-01-10.csv",
        ["536400,71053,LANTERN,1,2011-01-10 10:00:00,3.39,France"],
        header="InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,Country\n",
    )
    with pytest.raises(IngestError, match=r"2011-01-10\.csv: line 1: missing column.*CustomerID"):
        ingest(raw, Paths(tmp_path / "data"))


def test_empty_file_and_missing_path_are_clear_errors(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "2011-01-10.csv").write_text("")
    with pytest.raises(IngestError, match=r"2011-01-10\.csv: the file is empty"):
        ingest(raw, Paths(tmp_path / "data"))
    with pytest.raises(IngestError, match=r"(?s)does not exist.*SHELFWISE_RAW_DIR"):
        ingest(tmp_path / "nowhere", Paths(tmp_path / "data"))


def test_other_encoding_fails_before_anything_is_written(tmp_path: Path) -> None:
    """A Latin-1 file among good ones stops the run naming its line, and no partial
    output is left behind."""
    raw = tmp_path / "raw"
    write_csv(
        raw,
        "2011-01-10.csv",
        [
            "536400,71053,WHITE METAL LANTERN,1,2011-01-10 10:00:00,3.39,12345.0,France",
        ],
    )
    bad = raw / "2011-01-11.csv"
    bad.write_bytes(
        (HEADER + "536401,71053,LANTERN,1,2011-01-11 10:00:00,3.39,12345.0,France\n").encode()
        + "536402,71053,CAFÉ SIGN,1,2011-01-11 10:00:00,3.39,12345.0,France\n".encode("latin-1")
    )
    data = tmp_path / "data"
    with pytest.raises(IngestError, match=r"2011-01-11\.csv: line 3: .*not valid UTF-8"):
        ingest(raw, Paths(data))
    assert not (data / "events").exists()
    assert not (data / "ingest_manifest.json").exists()


def test_rerun_is_idempotent_and_a_new_day_appends_alone(
    real_log_slice: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    days = sorted(real_log_slice.glob("*.csv"))
    for src in days[:-1]:
        shutil.copy(src, raw / src.name)
    paths = Paths(tmp_path / "data")
    first = ingest(raw, paths)
    again = ingest(raw, paths)
    assert again.files_new == 0
    assert again.rows_loaded == first.rows_loaded
    assert again.rows_read == first.rows_read

    before = {p: p.stat().st_mtime_ns for p in paths.events.glob("*/*.parquet")}
    shutil.copy(days[-1], raw / days[-1].name)
    third = ingest(raw, paths)
    assert third.files_new == 1
    after = {p: p.stat().st_mtime_ns for p in paths.events.glob("*/*.parquet")}
    new = set(after) - set(before)
    assert len(new) == 1
    assert all(after[p] == before[p] for p in before)  # earlier days untouched
    assert third.rows_read == first.rows_read + len(days[-1].read_text().splitlines()) - 1
    assert third.balanced


def test_xlsx_workbook_is_accepted(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(HEADER.strip().split(","))
    sheet.append(
        [
            "536365",
            "85123A",
            "HEART",
            6,
            datetime(2011, 6, 1, 8, 26),
            2.55,
            17850.0,
            "United Kingdom",
        ]
    )
    sheet.append(
        [
            "C536366",
            "85123A",
            "HEART",
            -1,
            datetime(2011, 6, 2, 8, 26),
            2.55,
            17850.0,
            "United Kingdom",
        ]
    )
    path = tmp_path / "Online Retail.xlsx"
    book.save(path)
    paths = Paths(tmp_path / "data")
    report = ingest(path, paths)
    assert (report.rows_read, report.rows_loaded) == (2, 2)
    events = scan_events(paths).sort(S.EVENT_TIMESTAMP).collect()
    assert events[S.USER_ID].to_list() == ["17850", "17850"]
    assert events[S.EVENT_TIMESTAMP][0] == datetime(2011, 6, 1, 7, 26, tzinfo=UTC)


GOOD = "536400,71053,WHITE METAL LANTERN,1,2011-01-10 10:00:00,3.39,12345.0,France"


def test_a_later_file_touching_an_existing_day_adds_to_it(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_csv(raw, "2011-01-10.csv", [GOOD, GOOD.replace("536400", "536401")])
    paths = Paths(tmp_path / "data")
    ingest(raw, paths)
    write_csv(raw, "2011-01-10-late.csv", [GOOD.replace("536400", "536402")])
    report = ingest(raw, paths)
    assert (report.rows_read, report.rows_loaded) == (3, 3)
    # A second copy of a day under another name: every row is a duplicate of the first.
    shutil.copy(raw / "2011-01-10.csv", raw / "copy-of-2011-01-10.csv")
    report = ingest(raw, paths)
    assert (report.rows_read, report.rows_loaded) == (5, 3)
    assert report.set_aside_by_reason == {S.REASON_DUPLICATE: 2}
    assert report.balanced


def test_set_aside_rows_of_different_runs_are_all_kept(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_csv(raw, "a.csv", [GOOD, "536401,71053,X,1,not a date,3.39,12345.0,France"])
    paths = Paths(tmp_path / "data")
    ingest(raw, paths)
    write_csv(raw, "b.csv", [GOOD.replace("536400", "536402"), "536403,71053,X,1,,3.39,1.0,F"])
    report = ingest(raw, paths)
    assert report.set_aside_by_reason == {S.REASON_INVALID_DATE: 2}
    assert report.balanced
    details = sorted(scan_quarantine(paths).collect()[S.DETAIL].to_list())
    assert details == [
        "InvoiceDate is empty",
        "cannot read InvoiceDate not a date as %Y-%m-%d %H:%M:%S",
    ]


def test_time_in_the_skipped_spring_hour_is_read_an_hour_later(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_csv(raw, "2011-03-27.csv", [GOOD.replace("2011-01-10 10:00:00", "2011-03-27 01:30:00")])
    paths = Paths(tmp_path / "data")
    report = ingest(raw, paths)
    assert report.rows_loaded == 1
    assert scan_events(paths).collect()[S.EVENT_TIMESTAMP].item() == datetime(
        2011, 3, 27, 1, 30, tzinfo=UTC
    )


def test_unbalanced_quote_sets_aside_every_line_it_swallows(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    rows = [GOOD.replace("536400", f"5364{i:02d}") for i in range(10)]
    rows[3] = rows[3].replace("WHITE METAL", '"WHITE METAL')
    write_csv(raw, "2011-01-10.csv", rows)
    report = ingest(raw, Paths(tmp_path / "data"))
    assert report.rows_read == 10
    assert report.balanced
    assert report.set_aside_by_reason.get(S.REASON_MALFORMED, 0) >= 1
    assert report.rows_loaded == 10 - report.set_aside_by_reason[S.REASON_MALFORMED]


@pytest.mark.parametrize(
    ("row", "reason", "detail"),
    [
        (GOOD.replace(",1,2011", ",3000000000,2011"), S.REASON_INVALID_QUANTITY, "beyond"),
        (GOOD.replace("3.39", "inf"), S.REASON_INVALID_PRICE, "not finite"),
        (GOOD.replace("3.39", "nan"), S.REASON_INVALID_PRICE, "not finite"),
        (GOOD.replace("12345.0", "abc"), S.REASON_INVALID_CUSTOMER, "not a whole number"),
        (GOOD.replace("12345.0", "17850.5"), S.REASON_INVALID_CUSTOMER, "not a whole number"),
        (
            "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country",
            S.REASON_INVALID_INVOICE,
            "not 6-7 digits",
        ),
    ],
)
def test_values_out_of_range_are_set_aside_with_a_matching_detail(
    tmp_path: Path, row: str, reason: str, detail: str
) -> None:
    raw = tmp_path / "raw"
    write_csv(raw, "2011-01-10.csv", [GOOD.replace("536400", "536499"), row])
    paths = Paths(tmp_path / "data")
    report = ingest(raw, paths)
    assert report.set_aside_by_reason == {reason: 1}
    assert detail in scan_quarantine(paths).collect()[S.DETAIL].item()


def test_header_only_file_and_spaced_header(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_csv(raw, "2011-01-09.csv", [])
    write_csv(raw, "2011-01-10.csv", [GOOD], header=HEADER.replace(",", ", "))
    report = ingest(raw, Paths(tmp_path / "data"))
    assert (report.rows_read, report.rows_loaded) == (1, 1)


def test_unreadable_manifest_is_a_clear_error(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_csv(raw, "2011-01-10.csv", [GOOD])
    paths = Paths(tmp_path / "data")
    ingest(raw, paths)
    paths.ingest_manifest.write_text("{not json")
    with pytest.raises(IngestError, match=r"(?s)not a readable manifest.*Hint: remove"):
        ingest(raw, paths)


def test_stray_carriage_return_next_to_a_short_line_does_not_crash(tmp_path: Path) -> None:
    """A bare CR inside a field, in a file that also has a short line, is read line by
    line: nothing crashes and every row is accounted for."""
    raw = tmp_path / "raw"
    write_csv(
        raw,
        "2011-01-10.csv",
        [
            GOOD,
            GOOD.replace("536400", "536401").replace("WHITE", "WHI\rTE"),
            "536402,71053,SHORT",
        ],
    )
    report = ingest(raw, Paths(tmp_path / "data"))
    assert report.rows_read == 3
    assert report.balanced
    assert report.set_aside_by_reason.get(S.REASON_MALFORMED, 0) >= 1


def test_redis_url_is_parsed_with_password_and_bad_urls_are_config_errors() -> None:
    from feature_repo.config import Settings
    from feature_repo.errors import ConfigError

    settings = Settings(redis_url="redis://:secret@127.0.0.1:6380/2")
    assert settings.redis_parts == ("127.0.0.1", 6380, 2, "secret")
    assert "secret" not in settings.redacted_redis_url
    for bad in (
        "localhost:6379",
        "rediss://127.0.0.1:6379/0",
        "redis://127.0.0.1:99999/0",
        "redis://127.0.0.1:6379/abc",
    ):
        with pytest.raises(ConfigError, match="SHELFWISE_REDIS_URL"):
            _ = Settings(redis_url=bad).redis_parts


def test_relative_data_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feature_repo.config import load_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHELFWISE_DATA_DIR", "data2")
    assert load_settings().data_dir == tmp_path / "data2"
