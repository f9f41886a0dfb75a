"""What ``haloterm schedules`` and the console's schedules view show: every
schedule with its next fires and state, and who holds the automation lease."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from haloterm.automation.scheduler import schedule_specs
from haloterm.automation.schedules import Fire, local_text, next_fires

if TYPE_CHECKING:
    from haloterm.storage import Store
    from haloterm.storage.automation import LeaseHolder, ScheduleRun


@dataclass(frozen=True)
class ScheduleRow:
    """One schedule as listed.

    Attributes:
        id: ``<runbook>#<trigger index>``.
        runbook: the runbook it starts.
        error: why it cannot run (a bad cron or timezone); other fields then empty.
        fires: its next fire slots after now.
        last: the latest slot the store recorded for it, if any.
    """

    id: str
    runbook: str
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    paused: bool = False
    fires: tuple[Fire, ...] = ()
    last: ScheduleRun | None = None
    error: str | None = None

    @property
    def what(self) -> str:
        """The cron expression, or ``every <n>s``."""
        if self.cron:
            return self.cron
        return f"every {self.every:g}s" if self.every is not None else ""

    def local(self, fire: Fire) -> str:
        """A fire instant as local ISO text with offset and zone abbreviation."""
        return local_text(fire.at, self.timezone)


@dataclass(frozen=True)
class ScheduleOverview:
    """Every schedule, and the lease holder (None when nobody holds it)."""

    holder: LeaseHolder | None
    rows: list[ScheduleRow]

    def holder_line(self) -> str:
        """Who runs automation, in one line."""
        holder = self.holder
        if holder is not None and holder.alive:
            return f"automation: pid {holder.pid} on {holder.hostname} ({holder.user})"
        return "automation: no session holds the lease; schedules wait"


def schedule_overview(store: Store, *, count: int = 1) -> ScheduleOverview:
    """Read every schedule's state, next ``count`` fires and last recorded slot.

    Args:
        store: the store to read.
        count: how many next fires to compute per schedule.
    """
    specs, problems = schedule_specs(store)
    states = store.schedule_states()
    holder = store.lease_holder()
    now = store.now()
    rows = []
    for spec in specs:
        state = states.get(spec.id)
        recorded = store.schedule_runs(spec.id, limit=1)
        rows.append(
            ScheduleRow(
                id=spec.id,
                runbook=spec.runbook,
                cron=spec.schedule.cron,
                every=spec.schedule.every,
                timezone=spec.schedule.timezone,
                paused=bool(state and state.paused),
                fires=tuple(next_fires(spec.schedule, now, count)),
                last=recorded[0] if recorded else None,
            )
        )
    for spec_id, problem in problems.items():
        runbook = spec_id.rpartition("#")[0]
        rows.append(ScheduleRow(id=spec_id, runbook=runbook, error=problem))
    return ScheduleOverview(holder, rows)


def known_schedule(store: Store, schedule_id: str) -> bool:
    """Whether ``schedule_id`` names a schedule of an enabled runbook."""
    specs, problems = schedule_specs(store)
    return schedule_id in {spec.id for spec in specs} | set(problems)
