"""The one place that owns the time split.

Windows are half-open, ``[start, end)``, with boundaries at midnight UTC. The last four
weeks of the log are the test window, the four weeks before it validation, and all
earlier data training.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

WINDOW = timedelta(weeks=4)
# The retail log's last trading day is 2011-12-09, so its data end (exclusive) is the
# following midnight.
RETAIL_LOG_START = datetime(2010, 12, 1, tzinfo=UTC)
RETAIL_LOG_END = datetime(2011, 12, 10, tzinfo=UTC)


def midnight_utc(value: datetime | date) -> datetime:
    """Midnight UTC on or before ``value``; a naive datetime is taken as UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


@dataclass(frozen=True)
class TimeSplit:
    """Cut-offs of one log: ``train_end == valid_start`` and ``valid_end == test_start``."""

    data_start: datetime
    valid_start: datetime
    test_start: datetime
    data_end: datetime

    @property
    def train_end(self) -> datetime:
        return self.valid_start

    @property
    def valid_end(self) -> datetime:
        return self.test_start

    def window(self, name: str) -> tuple[datetime, datetime]:
        """``(start, end)`` of ``"train"``, ``"valid"`` or ``"test"``."""
        windows = {
            "train": (self.data_start, self.valid_start),
            "valid": (self.valid_start, self.test_start),
            "test": (self.test_start, self.data_end),
        }
        if name not in windows:
            raise ValueError(f"window={name!r} is not one of {sorted(windows)}.")
        return windows[name]


def time_split(
    data_start: datetime, data_end: datetime, *, window: timedelta = WINDOW
) -> TimeSplit:
    """Split ``[data_start, data_end)`` into training, validation and test windows.

    Parameters
    ----------
    data_start, data_end
        First and one-past-last instant of the log; rounded to midnight UTC (the end
        upwards), naive values taken as UTC.
    window
        Length of the validation and of the test window.
    """
    start = midnight_utc(data_start)
    end = midnight_utc(data_end)
    if end < data_end.replace(tzinfo=data_end.tzinfo or UTC):
        end += timedelta(days=1)
    test_start = end - window
    valid_start = test_start - window
    if valid_start <= start:
        raise ValueError(
            f"The log [{start:%Y-%m-%d}, {end:%Y-%m-%d}) is too short for two windows of "
            f"{window.days} days plus training data.\nHint: pass a shorter window."
        )
    return TimeSplit(start, valid_start, test_start, end)


RETAIL_SPLIT = time_split(RETAIL_LOG_START, RETAIL_LOG_END)
