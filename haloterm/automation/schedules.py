"""When schedules fire: five-field cron in an IANA timezone, or ``every`` a period.

APScheduler 3's cron trigger is wrong at DST changes (agronholm/apscheduler#1059,
#529, #116): it returns wall times that do not exist and can skip a weekday. Fire
instants are computed here instead, with croniter over local wall times and
zoneinfo for offsets:

- A wall time inside a spring-forward gap fires once, at the first valid instant
  after the gap (02:30 on a night that jumps 02:00 → 03:00 fires at 03:00), noted
  as DST-adjusted. Several wall times in one gap collapse into that one fire.
- A wall time that happens twice at fall-back fires once, at its first occurrence,
  for fixed-time schedules (an hour field other than ``*``). Schedules whose hour
  field is ``*`` (hourly and finer) follow real elapsed time and fire at both.
- ``every`` slots are whole multiples of the period since the Unix epoch, in UTC,
  so every process computes the same slots; the timezone does not apply.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from haloterm.models import Schedule

_FOLD_MARGIN = timedelta(hours=3)
"""How far before a start instant wall times are looked at: a repeated hour's second
occurrence is later in time than its wall time suggests."""


class ScheduleError(ValueError):
    """A schedule cannot be evaluated: a bad cron expression or timezone."""


@dataclass(frozen=True, order=True)
class Fire:
    """One slot of a schedule.

    Attributes:
        at: the instant it fires (UTC).
        slot_key: unique per schedule: the nominal local wall time for fixed-time
            cron schedules (so a repeated hour cannot fire twice), else the instant.
        nominal: the wall time the cron expression named (local, naive).
        note: why the fire is not at its nominal wall time (a DST change), if it is
            not.
    """

    at: datetime
    slot_key: str
    nominal: datetime
    note: str | None = None


def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``.

    Raises:
        ScheduleError: there is no such timezone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown timezone {name!r}") from None


def check_cron(expr: str) -> None:
    """Check a five-field cron expression.

    Raises:
        ScheduleError: not five fields, or not valid cron.
    """
    if len(expr.split()) != 5:
        raise ScheduleError(
            f"cron {expr!r} must have five fields: minute hour day month weekday"
        )
    if not croniter.is_valid(expr):
        raise ScheduleError(f"cron {expr!r} is not a valid cron expression")


def check_schedule(schedule: Schedule) -> None:
    """Check a schedule can be evaluated.

    Raises:
        ScheduleError: a bad cron expression, period or timezone.
    """
    if schedule.cron is not None:
        check_cron(schedule.cron)
        zone(schedule.timezone)
    elif schedule.every is not None and schedule.every < 1:
        raise ScheduleError("`every` must be at least 1s")


def fires_after(schedule: Schedule, after: datetime) -> Iterator[Fire]:
    """The schedule's fires strictly after ``after``, in time order, without end.

    Raises:
        ScheduleError: the schedule cannot be evaluated.
    """
    check_schedule(schedule)
    after = after.astimezone(UTC)
    if schedule.cron is not None:
        return _cron_fires(schedule.cron, zone(schedule.timezone), after)
    assert schedule.every is not None
    return _every_fires(schedule.every, after)


def next_fires(schedule: Schedule, after: datetime, count: int) -> list[Fire]:
    """The next ``count`` fires after ``after`` (fewer if the schedule ends)."""
    fires: list[Fire] = []
    for fire in fires_after(schedule, after):
        fires.append(fire)
        if len(fires) >= count:
            break
    return fires


def fires_between(
    schedule: Schedule, start: datetime, end: datetime, *, limit: int
) -> tuple[list[Fire], bool]:
    """Fires in ``(start, end]``, at most ``limit`` of them.

    Returns:
        The fires, and whether more fires in the range were left out.
    """
    found: list[Fire] = []
    for fire in fires_after(schedule, start):
        if fire.at > end:
            return found, False
        if len(found) >= limit:
            return found, True
        found.append(fire)
    return found, False


def is_fixed_time(expr: str) -> bool:
    """Whether a cron expression names fixed hours (its hour field is not ``*``)."""
    hours = croniter(expr).expanded[1]
    return not (hours == ["*"] or len(hours) >= 24)


def local_text(instant: datetime, tz_name: str) -> str:
    """An instant as local ISO text with its offset and zone abbreviation."""
    local = instant.astimezone(zone(tz_name))
    return f"{local.isoformat()} {local.tzname()}"


# --------------------------------------------------------------------------- cron


def _cron_fires(expr: str, tz: ZoneInfo, after: datetime) -> Iterator[Fire]:
    fixed = is_fixed_time(expr)
    start = after.astimezone(tz).replace(tzinfo=None) - _FOLD_MARGIN
    walls = croniter(expr, start)
    pending: list[tuple[datetime, int, Fire]] = []
    order = 0
    last: datetime | None = None
    while True:
        try:
            wall: datetime = walls.get_next(datetime)
        except CroniterBadDateError:
            break
        except CroniterBadCronError as exc:
            raise ScheduleError(str(exc)) from None
        resolved = _resolve(wall, tz, fixed)
        for fire in resolved:
            if fire.at > after:
                order += 1
                heapq.heappush(pending, (fire.at, order, fire))
        # Later wall times resolve to instants no earlier than this bound, so
        # everything before it is final and in order.
        bound = min(fire.at for fire in resolved) - _FOLD_MARGIN
        while pending and pending[0][0] <= bound:
            fire = heapq.heappop(pending)[2]
            if last is None or fire.at > last:
                last = fire.at
                yield fire
    while pending:
        fire = heapq.heappop(pending)[2]
        if last is None or fire.at > last:
            last = fire.at
            yield fire


def _resolve(wall: datetime, tz: ZoneInfo, fixed: bool) -> list[Fire]:
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    nominal_key = wall.isoformat(timespec="minutes")

    def fire(at: datetime, note: str | None = None) -> Fire:
        key = nominal_key if fixed else at.isoformat()
        return Fire(at=at, slot_key=key, nominal=wall, note=note)

    if first == second:
        return [fire(first)]
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        # The wall time happens twice (fall-back); fold=0 is the first time.
        if not fixed:
            return [fire(first), fire(second)]
        return [fire(first)]
    # The wall time does not exist (spring-forward gap): fire at the gap's end.
    at = _gap_end(second, first, tz)
    local = at.astimezone(tz)
    note = (
        f"DST-adjusted: {wall:%H:%M} does not exist on {wall:%Y-%m-%d} in {tz.key};"
        f" runs at {local:%H:%M} {local.tzname()}"
    )
    return [fire(at, note)]


def _gap_end(low: datetime, high: datetime, tz: ZoneInfo) -> datetime:
    """The transition in ``(low, high]``: the first instant on the new offset."""
    after_offset = high.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).utcoffset() == after_offset:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


# --------------------------------------------------------------------------- every


def _every_fires(period: float, after: datetime) -> Iterator[Fire]:
    step = timedelta(seconds=period)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    index = int((after - epoch) / step) + 1
    at = epoch + step * index
    while True:
        if at > after:
            yield Fire(at=at, slot_key=at.isoformat(), nominal=at.replace(tzinfo=None))
        at += step
