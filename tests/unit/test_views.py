"""Times in answers and events: RFC 3339 in UTC with a Z (API.md), microseconds only when there are any."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from fechatter_server.views import iso


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 23, 16, 30, 59, 397527, tzinfo=UTC), "2026-11-23T16:30:59.397527Z"),
        (datetime(2026, 1, 1, tzinfo=UTC), "2026-01-01T00:00:00Z"),
        (datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=UTC), "2026-01-01T00:00:00.000005Z"),
        (datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))), "2026-01-01T00:00:00Z"),
        (datetime(2025, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))), "2026-01-01T00:30:00Z"),
    ],
)
def test_times_are_utc_with_a_z(value: datetime, expected: str) -> None:
    assert iso(value) == expected


def test_no_time_stays_none() -> None:
    assert iso(None) is None
