"""Reading the audit log and the online figures of what was served."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from feature_repo import schema as S
from monitoring.audit import (
    audit_span,
    gini,
    impressions_frame,
    output_figures,
    read_audit,
    requests_frame,
)
from monitoring.windows import Window
from tests.monitoring_fixtures import audit_record, write_audit_log

MARCH = Window(datetime(2011, 3, 1, tzinfo=UTC), datetime(2011, 3, 8, tzinfo=UTC))


def test_missing_or_empty_audit_log_reads_as_no_answers(tmp_path: Path) -> None:
    assert read_audit(tmp_path / "absent").height == 0
    assert audit_span(tmp_path / "absent") is None
    (tmp_path / "2011-03-01.jsonl").write_text("")
    frame = read_audit(tmp_path, MARCH)
    assert frame.height == 0
    assert S.AUDIT_SCORES in frame.columns
    assert audit_span(tmp_path) is None
    assert requests_frame(frame).height == 0
    assert impressions_frame(frame).height == 0
    figures = output_figures(frame, catalogue_size=10, sample_requests=5)
    assert figures.n_requests == 0
    assert figures.fallback_rate is None


def test_records_outside_the_window_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    inside = audit_record(
        request_id="a",
        when=datetime(2011, 3, 2, 9, tzinfo=UTC),
        items=["X", "Y"],
        scores=[0.9, 0.1],
        sources=[["als"], ["als", "pop"]],
    )
    after = audit_record(
        request_id="b",
        when=datetime(2011, 3, 9, 9, tzinfo=UTC),
        items=["X"],
        scores=[0.5],
        sources=[["pop"]],
        fallback="cold_start",
    )
    (tmp_path / "2011-03-02.jsonl").write_text(json.dumps(inside) + "\n" + '{"request_id": "c", ')
    (tmp_path / "2011-03-09.jsonl").write_text(json.dumps(after) + "\n")
    (tmp_path / "notes.jsonl").write_text("not a day\n")
    frame = read_audit(tmp_path, MARCH)
    assert frame[S.AUDIT_REQUEST_ID].to_list() == ["a"]
    assert frame.schema[S.AUDIT_TIMESTAMP] == pl.Datetime("us", "UTC")
    span = audit_span(tmp_path)
    assert span is not None
    assert span.label() == "2011-03-02 .. 2011-03-09"


def test_impressions_keep_rank_score_and_sorted_sources(tmp_path: Path) -> None:
    record = audit_record(
        request_id="a",
        when=datetime(2011, 3, 2, tzinfo=UTC),
        items=["X", "Y", "Z"],
        scores=[0.9, 0.5],
        sources=[["pop", "als"], ["als"], []],
    )
    (tmp_path / "2011-03-02.jsonl").write_text(json.dumps(record) + "\n")
    impressions = impressions_frame(read_audit(tmp_path))
    assert impressions[S.ITEM_ID].to_list() == ["X", "Y", "Z"]
    assert impressions["rank"].to_list() == [1, 2, 3]
    # A record with fewer scores than items leaves the missing ones null.
    assert impressions["score"].to_list() == [0.9, 0.5, None]
    assert impressions["sources"].to_list() == ["als+pop", "als", None]


def test_output_figures_match_the_generated_traffic(tmp_path: Path) -> None:
    n = write_audit_log(
        tmp_path, date(2011, 3, 1), 7, requests_per_day=100, fallback_rate=0.2, seed=1
    )
    frame = read_audit(tmp_path, MARCH)
    assert frame.height == n == 700
    figures = output_figures(frame, catalogue_size=300, sample_requests=700)
    assert figures.fallback_rate == pytest.approx(0.2, abs=0.04)
    assert figures.fallback_by_reason == {"store_unavailable": figures.fallback_rate}
    assert figures.guest_share == pytest.approx(0.2, abs=0.04)
    assert figures.n_impressions == 7000
    # Fallback lists carry only the popularity source; every other item one or two sources.
    assert figures.source_share["popularity"] > figures.fallback_rate
    # 560 personalised answers of 10 random items out of 300 cover nearly all of them.
    assert figures.coverage is not None
    assert figures.coverage > 0.95
    assert figures.model_versions == {"ranker-1": 700}


def test_coverage_is_measured_on_equal_samples(tmp_path: Path) -> None:
    """A busier window does not look more diverse only because it served more answers."""
    small, large = tmp_path / "small", tmp_path / "large"
    write_audit_log(small, date(2011, 3, 1), 1, requests_per_day=20, seed=2)
    write_audit_log(large, date(2011, 3, 1), 1, requests_per_day=400, seed=3)
    a = output_figures(read_audit(small), catalogue_size=300, sample_requests=20)
    b = output_figures(read_audit(large), catalogue_size=300, sample_requests=20)
    unequal = output_figures(read_audit(large), catalogue_size=300, sample_requests=400)
    assert a.coverage is not None
    assert b.coverage is not None
    assert unequal.coverage is not None
    assert abs(a.coverage - b.coverage) < 0.1
    assert unequal.coverage > b.coverage + 0.2


def test_narrower_recommendations_lower_coverage_and_raise_concentration(tmp_path: Path) -> None:
    wide, narrow = tmp_path / "wide", tmp_path / "narrow"
    write_audit_log(wide, date(2011, 3, 1), 2, requests_per_day=100, seed=4)
    write_audit_log(narrow, date(2011, 3, 1), 2, requests_per_day=100, popular_share=0.8, seed=5)
    a = output_figures(read_audit(wide), catalogue_size=300, sample_requests=200)
    b = output_figures(read_audit(narrow), catalogue_size=300, sample_requests=200)
    assert a.coverage is not None
    assert b.coverage is not None
    assert b.coverage < 0.8 * a.coverage
    assert b.gini is not None
    assert a.gini is not None
    assert b.gini > a.gini
    assert b.top10_share is not None
    assert a.top10_share is not None
    assert b.top10_share > a.top10_share


def test_gini_of_even_and_of_concentrated_counts() -> None:
    assert gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 8]) == pytest.approx(0.75)
    # Padding with never-served catalogue items raises the concentration.
    assert gini([4, 4], n_items=4) == pytest.approx(0.5)
