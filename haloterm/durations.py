"""Durations as runbook files write them: ``500ms``, ``30s``, ``5m``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import datetime

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
MAX_DAYS = 3660
"""The longest duration taken (ten years): beyond it timers overflow, and nothing
an operator waits for is that long."""


def parse_duration(value: object) -> float:
    """Turn a duration string into seconds.

    Args:
        value: what the file held. Only strings are accepted: YAML 1.1 reads an
            unquoted ``1:30`` as the number 90, so a number here is never trusted.

    Returns:
        The duration in seconds.

    Raises:
        ValueError: the value is not a string of the form ``<number><unit>...``,
            or is longer than :data:`MAX_DAYS` days.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        kind = type(value).__name__
        example = f'"{value}s"' if isinstance(value, int | float) else '"90s"'
        raise ValueError(
            f'must be a duration with a unit, like {example} or "5m", not the '
            f"{kind} {value!r} (bare numbers are refused: YAML reads 1:30 as 90)"
        )
    text = value.strip().replace(" ", "")
    if not text or not _WHOLE.fullmatch(text):
        raise ValueError(
            f'"{value}" is not a duration; use a number and a unit: '
            '"500ms", "30s", "5m", "1h", "1h30m", "2d"'
        )
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if seconds > MAX_DAYS * 86400:
        raise ValueError(f'"{value}" is longer than {MAX_DAYS}d, the longest taken')
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds compactly for people: ``850ms``, ``12.3s``, ``4m05s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def countdown(deadline: datetime | None, now: datetime) -> str:
    """Time left until a deadline: ``14m05s``, ``1h02m``, ``overdue``, ``no limit``."""
    if deadline is None:
        return "no limit"
    seconds = int((deadline - now).total_seconds())
    if seconds <= 0:
        return "overdue"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
