"""Clocks automation reads: a wall clock (UTC) and a monotonic one, injectable.

Schedules compare the two to notice the wall clock jumping (an NTP step, a VM
snapshot restored, a host waking from sleep); tests drive a :class:`ManualClock`
instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where automation reads the time."""

    def now(self) -> datetime:
        """The wall clock, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never jumps."""
        ...


class SystemClock:
    """The host's clocks."""

    def now(self) -> datetime:
        """The wall clock, timezone-aware, in UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def __call__(self) -> datetime:
        return self.now()


class ManualClock:
    """A clock that moves only when told to; also callable as a store clock.

    Args:
        start: the wall time to start at (aware).
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._wall = start.astimezone(UTC)
        self._mono = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current wall time."""
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        """The current monotonic reading."""
        with self._lock:
            return self._mono

    def __call__(self) -> datetime:
        return self.now()

    def advance(self, seconds: float) -> None:
        """Let time pass: both clocks move together."""
        with self._lock:
            self._wall += timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, wall: datetime) -> None:
        """Let time pass up to ``wall`` (both clocks move).

        Raises:
            ValueError: ``wall`` is in the past; use :meth:`jump` to step back.
        """
        seconds = (wall - self.now()).total_seconds()
        if seconds < 0:
            raise ValueError("time only passes forward; use jump() to step back")
        self.advance(seconds)

    def jump(self, seconds: float) -> None:
        """Step the wall clock alone (forward or back), as an NTP step would."""
        with self._lock:
            self._wall += timedelta(seconds=seconds)
