"""The tutorial's timestamp format: UTC ``YYYY-MM-DD HH:MM:SS.ffffff``."""

from datetime import UTC, datetime
from typing import Final

FORMAT: Final = "%Y-%m-%d %H:%M:%S.%f"
NOT_DELETED: Final = "9999-01-01 00:00:00.000000"


def format_time(moment: datetime | None) -> str:
    """Render a moment (``None`` meaning "never") in the tutorial's format."""
    if moment is None:
        return NOT_DELETED
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # The same text as strftime(FORMAT), at a fraction of the cost (it runs for every row read).
    return moment.replace(tzinfo=None).isoformat(" ", "microseconds")


def parse_time(text: str) -> datetime:
    """Parse the tutorial's format as UTC; raises ValueError on anything else."""
    return datetime.strptime(text, FORMAT).replace(tzinfo=UTC)
