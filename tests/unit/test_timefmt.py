"""The tutorial's timestamp format, as every outplan carries it."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from contracts.timefmt import NOT_DELETED, format_time, parse_time

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "2026-01-02 03:04:05.678901"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02 03:04:05.000000"),  # always six digits
        (datetime(2026, 1, 2, 1, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))), "2026-01-01 23:00:00.000001"),
        (None, NOT_DELETED),
    ],
)
def test_moments_render_in_utc_with_microseconds(moment: datetime | None, text: str) -> None:
    assert format_time(moment) == text
    if moment is not None:
        assert parse_time(text) == moment
