"""The ``wait`` action: pause a run for a while, or until a wall time of day.

Waits follow the context's clock (:meth:`ActionContext.now`), checked at least every
``poll_interval`` seconds, so a clock that jumps (a host waking from sleep, an NTP
step) is noticed instead of being slept through. Cancelling the step ends the wait.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, time, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import StrictStr, field_validator, model_validator

from haloterm.models import Duration
from haloterm.plugins.base import Action, ActionContext, ActionInputs, StepResult

_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def _as_time_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1440:
        # YAML 1.1 reads an unquoted 22:30 as 22 * 60 + 30.
        hint = f'"{value // 60}:{value % 60:02d}"'
        raise ValueError(
            f"was read as a number ({value}), not a time; quote times: {hint}"
        )
    raise ValueError(
        f'must be a time of day written as a quoted "HH:MM", not {value!r}; quote times'
    )


class WaitInputs(ActionInputs):
    """The ``with`` block of a ``wait`` step: one of ``duration`` or ``until``."""

    duration: Duration | None = None
    """How long to wait: `"30s"`, `"5m"`, `"1h"`."""
    until: StrictStr | None = None
    """A wall time of day, quoted: `"22:30"`; the next time it comes round."""
    timezone: StrictStr = "UTC"
    """The IANA zone `until` is read in (`Europe/London`)."""

    @field_validator("until", mode="before")
    @classmethod
    def _until_text(cls, value: Any) -> Any:
        return _as_time_text(value)

    @field_validator("until")
    @classmethod
    def _until_format(cls, value: str | None) -> str | None:
        if value is not None and not _HHMM.fullmatch(value.strip()):
            raise ValueError(
                f'"{value}" is not a time of day; use "HH:MM" (00:00-23:59)'
            )
        return None if value is None else value.strip()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'unknown time zone "{value}"; use an IANA name') from None
        return value

    @model_validator(mode="after")
    def _one_of(self) -> WaitInputs:
        if (self.duration is None) == (self.until is None):
            raise ValueError("a wait needs exactly one of `duration` or `until`")
        return self


def next_occurrence(now: datetime, hhmm: str, timezone: str) -> datetime:
    """The first instant after ``now`` when the clock in ``timezone`` reads ``hhmm``.

    A time skipped by a daylight-saving change resolves with the offset in force
    before the change (01:30 in a 01:00 to 02:00 gap comes at 02:30 summer time); a
    time that happens twice resolves to its first occurrence.

    Args:
        now: the current time, timezone-aware (naive values are taken as UTC).
        hhmm: ``"HH:MM"``.
        timezone: an IANA zone name.

    Returns:
        The instant, in UTC.
    """
    zone = ZoneInfo(timezone)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    hours, minutes = (int(part) for part in hhmm.split(":"))
    day = now.astimezone(zone).date()
    while True:
        local = datetime.combine(day, time(hours, minutes), tzinfo=zone)
        instant = local.astimezone(UTC)
        if instant > now:
            return instant
        day += timedelta(days=1)


class WaitAction(Action):
    """Waits for a duration or until a wall time, then passes.

    Args:
        poll_interval: the longest stretch slept before the clock is read again.
    """

    name: ClassVar[str] = "wait"
    Inputs: ClassVar[type[ActionInputs]] = WaitInputs
    description: ClassVar[str] = "Pause for a duration or until a time of day"

    def __init__(self, *, poll_interval: float = 1.0) -> None:
        self.poll_interval = poll_interval

    async def run(self, inputs: WaitInputs, ctx: ActionContext) -> StepResult:
        """Sleep until the target instant on the context's clock.

        Args:
            inputs: the rendered ``with`` block.
            ctx: the engine's services; its clock decides when the wait is over.

        Returns:
            Passed, with outputs ``until`` (ISO 8601, UTC) and ``waited`` (seconds).

        Raises:
            asyncio.CancelledError: the step was cancelled or timed out.
        """
        start = ctx.now()
        if inputs.until is not None:
            target = next_occurrence(start, inputs.until, inputs.timezone)
            when = f"{target:%Y-%m-%d %H:%M} UTC"
            ctx.info(f"waiting until {inputs.until} {inputs.timezone} ({when})")
        else:
            target = start + timedelta(seconds=inputs.duration or 0.0)
        # Polling, not one long sleep: the wall clock may jump while we wait.
        while (remaining := (target - ctx.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(remaining, self.poll_interval))
        waited = (ctx.now() - start).total_seconds()
        return StepResult.ok(until=target.isoformat(), waited=round(waited, 3))
