"""Reference and current windows: half-open ``[start, end)`` at midnight UTC.

By default the reference window is the four weeks before the training window ends and the
current window the latest four weeks of the log, both from the time split of the ingested
events (:mod:`feature_repo.timesplit`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from feature_repo import schema as S
from feature_repo.config import Paths
from feature_repo.errors import ConfigError
from feature_repo.ingest import scan_events
from feature_repo.timesplit import midnight_utc, time_split

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ConfigError(f"window {self.start} .. {self.end} needs tz-aware times.")
        if self.end <= self.start:
            raise ConfigError(
                f"window start {self.start:%Y-%m-%d} is not before its end {self.end:%Y-%m-%d}."
            )

    @property
    def days(self) -> float:
        return (self.end - self.start) / timedelta(days=1)

    def label(self) -> str:
        """``2011-09-17 .. 2011-10-14`` (the last day included)."""
        last = self.end - timedelta(microseconds=1)
        return f"{self.start:%Y-%m-%d} .. {last:%Y-%m-%d}"

    def to_json(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Window:
        return cls(datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"]))

    def overlaps(self, other: Window) -> bool:
        return self.start < other.end and other.start < self.end

    def contains_day(self, day: date) -> bool:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return self.start < start + timedelta(days=1) and start < self.end


def parse_day(text: str) -> datetime:
    """``YYYY-MM-DD`` (or an ISO timestamp) as midnight UTC of that day."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a date.\nHint: write days as YYYY-MM-DD, e.g. 2011-03-01."
        ) from None
    return midnight_utc(value)


def parse_window(start: str, end: str) -> Window:
    """A window from two ``YYYY-MM-DD`` days; ``end`` is exclusive."""
    return Window(parse_day(start), parse_day(end))


def log_span(paths: Paths) -> Window:
    """``[first day, day after the last event)`` of the ingested events."""
    try:
        row = (
            scan_events(paths)
            .select(
                pl.col(S.EVENT_TIMESTAMP).min().alias("first"),
                pl.col(S.EVENT_TIMESTAMP).max().alias("last"),
            )
            .collect()
            .row(0)
        )
    except (FileNotFoundError, pl.exceptions.ComputeError) as exc:
        raise ConfigError(
            f"no ingested events under {paths.events}.\nHint: run `make ingest` first."
        ) from exc
    first, last = row
    if first is None:
        raise ConfigError(f"the events under {paths.events} are empty.")
    return Window(midnight_utc(first), midnight_utc(last) + timedelta(days=1))


def default_windows(paths: Paths, *, window_days: int = 28) -> tuple[Window, Window]:
    """``(reference, current)``: the weeks before training ends, and the latest weeks.

    Parameters
    ----------
    paths
        Where the ingested events are.
    window_days
        Length of both windows and of the time split's validation and test windows.
    """
    span = log_span(paths)
    length = timedelta(days=window_days)
    split = time_split(span.start, span.end, window=length)
    reference = Window(max(span.start, split.train_end - length), split.train_end)
    current = Window(max(span.start, span.end - length), span.end)
    return reference, current
