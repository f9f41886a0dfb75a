"""Time as the store writes it: UTC, ISO-8601 text with an offset."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def to_text(value: datetime) -> str:
    """Render a datetime the way every timestamp column holds it.

    Naive datetimes are taken to be UTC. Microseconds are always written, so the
    text sorts in time order.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def from_text(value: str | None) -> datetime | None:
    """Parse a timestamp column back into an aware datetime (None stays None)."""
    if value is None:
        return None
    return datetime.fromisoformat(value)


def parse_time(value: str) -> datetime:
    """Parse a NOT NULL timestamp column."""
    return datetime.fromisoformat(value)
