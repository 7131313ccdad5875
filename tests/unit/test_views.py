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


def test_a_page_row_unpacks_into_the_message_columns_in_their_order() -> None:
    """The history page unpacks each record by position (messages/service.py): role, the message's columns
    in ``message_of``'s order, then the three decoration columns. A reordered list would silently swap fields
    (an edited message shown as deleted), so the names must line up exactly."""
    import inspect
    import re

    from fechatter_server.messages import service
    from fechatter_server.messages.decorate import DECORATION
    from fechatter_server.views import message_of

    columns = [c.strip().removeprefix("m.") for c in service.MESSAGE_SQL_COLUMNS.split(",")]
    assert columns == list(inspect.signature(message_of).parameters)
    decoration = re.findall(r"\bAS (deco_\w+)", DECORATION)
    assert decoration == ["deco_files", "deco_reactions", "deco_mentions"]
    page = " ".join(service._PAGE.split())
    assert page.startswith("SELECT member.role, page.* FROM")
    message_columns = " ".join(service.MESSAGE_SQL_COLUMNS.split())
    decoration_text = " ".join(DECORATION.split())
    assert " ".join(["SELECT", f"{message_columns},", decoration_text, "FROM messages m"]) in page
