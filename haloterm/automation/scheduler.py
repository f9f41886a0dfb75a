"""Scheduled runs: which slots are due, what to do about missed ones, and the
APScheduler thread that wakes the engine's loop at each fire instant.

The decisions live in :class:`ScheduleKeeper`, driven by an injected clock:
:meth:`ScheduleKeeper.tick` looks at every slot since a schedule's ``last_slot``
(stored), fires the latest one when it is on time (or late within the grace, with
``misfire: coalesce``), and records every other slot as ``missed`` — never silently,
never as a burst. :class:`SchedulerThread` only decides *when* to call it: an
APScheduler 3 ``BackgroundScheduler`` with one job per schedule on a
:class:`FireTrigger` (instants from :mod:`haloterm.automation.schedules`, not
APScheduler's DST-unsafe cron trigger), handing each wake-up to the loop with
``asyncio.run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from haloterm.automation.clock import Clock
from haloterm.automation.schedules import (
    Fire,
    ScheduleError,
    check_schedule,
    fires_after,
    fires_between,
    local_text,
)
from haloterm.engine.events import Notice
from haloterm.models import Schedule
from haloterm.storage.automation import SlotDecision
from haloterm.storage.clock import to_text

if TYPE_CHECKING:
    from haloterm.engine.runner import Engine
    from haloterm.storage import Store

logger = logging.getLogger(__name__)

ON_TIME = 60.0
"""Seconds late a slot may start and still count as on time (``misfire: skip``)."""
MAX_LISTED = 50
"""Missed slots recorded one by one; beyond that, one summary audit row."""
JUMP_THRESHOLD = 120.0
"""Seconds the wall clock may drift from the monotonic clock between two checks
before it counts as a jump."""
ACTOR = "automation"
MISSED_REASON = "missed: no scheduler was running (host asleep or no lease holder)"


@dataclass(frozen=True)
class ScheduleSpec:
    """One ``schedule`` trigger of a runbook's latest version.

    Attributes:
        id: ``<runbook>#<trigger index>``; the key of its stored state and slots.
    """

    id: str
    runbook: str
    trigger_index: int
    schedule: Schedule
    params: dict[str, Any] = field(default_factory=dict)


def schedule_specs(store: Store) -> tuple[list[ScheduleSpec], dict[str, str]]:
    """The schedules of every enabled runbook, and the ones that cannot run.

    Returns:
        The valid schedules, and a problem text per invalid schedule id.
    """
    specs: list[ScheduleSpec] = []
    problems: dict[str, str] = {}
    for summary in store.list_runbooks():
        if not summary.enabled:
            continue
        stored = store.get_runbook(summary.name)
        if stored is None:
            continue
        for index, trigger in enumerate(stored.runbook.triggers):
            if trigger.schedule is None:
                continue
            spec_id = f"{summary.name}#{index}"
            try:
                check_schedule(trigger.schedule)
            except ScheduleError as exc:
                problems[spec_id] = str(exc)
                continue
            specs.append(
                ScheduleSpec(
                    spec_id, summary.name, index, trigger.schedule, dict(trigger.params)
                )
            )
    return specs, problems


class ScheduleKeeper:
    """Decides and starts scheduled runs; only the automation lease holder calls it.

    Args:
        store: the store.
        engine: the engine that runs what fires.
        clock: wall and monotonic clocks.
        holder: this process's lease holder id, stamped on the slots it decides.
        publish: where notices for every console go.
    """

    def __init__(
        self,
        store: Store,
        engine: Engine,
        clock: Clock,
        *,
        holder: str,
        publish: Callable[[Notice], None] | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.clock = clock
        self.holder = holder
        self.specs: dict[str, ScheduleSpec] = {}
        self.problems: dict[str, str] = {}
        self._publish = publish or (lambda notice: None)
        self._sample: tuple[datetime, float] | None = None
        self._lock = asyncio.Lock()

    async def reload(self) -> bool:
        """Read the schedules from the store again.

        Returns:
            True when the set of schedules changed.
        """
        specs, problems = await self.store.call(schedule_specs, self.store)
        for spec_id, problem in problems.items():
            if spec_id not in self.problems:
                logger.warning("schedule %s cannot run: %s", spec_id, problem)
        self.problems = problems
        new = {spec.id: spec for spec in specs}
        changed = new != self.specs
        self.specs = new
        return changed

    def next_fire(self, spec: ScheduleSpec, after: datetime | None = None) -> Fire:
        """The first fire of a schedule after ``after`` (now by default)."""
        return next(fires_after(spec.schedule, after or self.clock.now()))

    async def tick(self) -> bool:
        """Decide every schedule's due slots as of now.

        Returns:
            True when the wall clock jumped since the last tick (wake-ups computed
            before it are stale).
        """
        async with self._lock:
            jumped = await self._check_clock()
            states = await self.store.call(self.store.schedule_states)
            for spec in list(self.specs.values()):
                state = states.get(spec.id)
                if state is not None and state.paused:
                    continue
                try:
                    await self._decide(spec, state.last_slot if state else None)
                except Exception:
                    logger.exception("schedule %s: deciding its slots failed", spec.id)
            return jumped

    async def _check_clock(self) -> bool:
        wall, mono = self.clock.now(), self.clock.monotonic()
        previous, self._sample = self._sample, (wall, mono)
        if previous is None:
            return False
        skew = (wall - previous[0]).total_seconds() - (mono - previous[1])
        if abs(skew) <= JUMP_THRESHOLD:
            return False
        direction = "forward" if skew > 0 else "back"
        detail = {"jump_seconds": round(skew, 3), "direction": direction}
        detail["wall_before"] = to_text(previous[0])
        detail["wall_after"] = to_text(wall)
        logger.warning("wall clock jumped %s by %.0f s", direction, abs(skew))
        if skew < 0:
            # Slots already decided lie ahead of the corrected clock; a new epoch
            # lets them be decided again instead of waiting for the clock to catch up.
            await self.store.call(
                self.store.bump_clock_epoch, actor=ACTOR, detail=detail
            )
        else:
            await self.store.call(
                self.store.audit,
                actor=ACTOR,
                action="clock.jump",
                target_type="clock",
                target_id="wall",
                detail=detail,
            )
        self._publish(
            Notice(
                f"The wall clock jumped {direction} by {abs(skew):.0f} s;"
                " schedules were recomputed.",
                severity="warning",
                title="Clock jump",
            )
        )
        return True

    async def _decide(self, spec: ScheduleSpec, last_slot: datetime | None) -> None:
        now = self.clock.now()
        if last_slot is None:
            # A schedule seen for the first time starts from now: no backlog.
            await self.store.call(self.store.set_schedule_start, spec.id, now)
            return
        sched = spec.schedule
        listed, more = fires_between(sched, last_slot, now, limit=MAX_LISTED)
        if not listed:
            return
        latest = listed[-1]
        if more:
            lookback = now - timedelta(seconds=max(sched.misfire_grace, ON_TIME) + 1)
            recent, _ = fires_between(
                sched, max(lookback, listed[-1].at), now, limit=10_000
            )
            latest = recent[-1] if recent else latest
        late = (now - latest.at).total_seconds()
        if sched.misfire == "coalesce":
            fire_latest = late <= sched.misfire_grace
        else:
            fire_latest = late <= min(ON_TIME, sched.misfire_grace)
        missed = [f for f in listed if not (fire_latest and f is latest)]
        decisions = [_missed(f, late=(now - f.at).total_seconds()) for f in missed]
        chosen: SlotDecision | None = None
        if fire_latest:
            chosen = await self._fire_decision(spec, latest, late)
            decisions.append(chosen)
        audit = _missed_audit(spec, missed, more, now) if missed else None
        ids = await self.store.call(
            self.store.record_slots,
            spec.id,
            decisions,
            last_slot=latest.at,
            holder=self.holder,
            actor=ACTOR,
            audit=audit,
        )
        if missed:
            self._notice_missed(spec, missed, more, fired=chosen)
        if chosen is not None and chosen.status == "starting" and ids[-1] is not None:
            await self._start(spec, latest, ids[-1])

    async def _fire_decision(
        self, spec: ScheduleSpec, fire: Fire, late: float
    ) -> SlotDecision:
        if not spec.schedule.allow_overlap:
            busy = await self._still_running(spec)
            if busy is not None:
                return SlotDecision(
                    slot_key=fire.slot_key,
                    scheduled_for=fire.at,
                    status="skipped",
                    reason=f"skipped: still running (execution {busy})",
                )
        notes = [fire.note] if fire.note else []
        if late > ON_TIME:
            notes.append(f"started {late / 60:.0f} min late (misfire: coalesce)")
        return SlotDecision(
            slot_key=fire.slot_key,
            scheduled_for=fire.at,
            status="starting",
            reason="; ".join(notes) or None,
        )

    async def _still_running(self, spec: ScheduleSpec) -> int | None:
        runs = await self.store.call(self.store.schedule_runs, spec.id, limit=20)
        for run in runs:
            if run.execution_id is None:
                continue
            execution = await self.store.call(
                self.store.get_execution, run.execution_id
            )
            if execution is not None and not execution.status.finished:
                return execution.id
        return None

    async def _start(self, spec: ScheduleSpec, fire: Fire, run_id: int) -> None:
        params = dict(spec.params)
        stored = await self.store.call(self.store.get_runbook, spec.runbook)
        if stored is not None:
            for name in stored.runbook.secret_params:
                if name in self.engine.secrets and name not in params:
                    params[name] = self.engine.secrets[name]
        try:
            execution_id = await self.engine.start(
                spec.runbook, params, operator=ACTOR, trigger=f"schedule:{run_id}"
            )
        except Exception as exc:
            reason = f"could not start: {exc}"
            logger.warning("schedule %s slot %s %s", spec.id, fire.slot_key, reason)
            await self.store.call(
                self.store.finish_slot, run_id, status="failed", reason=reason
            )
            return
        await self.store.call(
            self.store.finish_slot, run_id, status="started", execution_id=execution_id
        )
        logger.info(
            "schedule %s fired for %s: execution %s",
            spec.id,
            local_text(fire.at, spec.schedule.timezone),
            execution_id,
        )

    def _notice_missed(
        self, spec: ScheduleSpec, missed: list[Fire], more: bool, fired: Any
    ) -> None:
        count = f"{len(missed)}{'+' if more else ''}"
        first, last = missed[0].at, missed[-1].at
        text = (
            f"{spec.runbook}: {count} scheduled run(s) missed "
            f"({first:%Y-%m-%d %H:%MZ} to {last:%Y-%m-%d %H:%MZ})"
        )
        if fired is not None and fired.status == "starting":
            text += "; the latest slot runs now"
        logger.warning("%s", text)
        self._publish(Notice(text, severity="warning", title="Missed schedule"))


def _missed(fire: Fire, *, late: float) -> SlotDecision:
    return SlotDecision(
        slot_key=fire.slot_key,
        scheduled_for=fire.at,
        status="missed",
        reason=f"{MISSED_REASON}; {late / 60:.0f} min ago",
    )


def _missed_audit(
    spec: ScheduleSpec, missed: list[Fire], more: bool, now: datetime
) -> dict[str, Any]:
    return {
        "action": "schedule.missed",
        "count": len(missed),
        "more_not_listed": more,
        "slots": [to_text(f.at) for f in missed],
        "policy": spec.schedule.misfire,
        "reason": MISSED_REASON,
        "decided_at": to_text(now),
    }


# --------------------------------------------------------------------------- thread


class FireTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler 3 trigger that fires at a schedule's computed instants."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        start = max(previous_fire_time or now, now)
        for fire in fires_after(self.schedule, start - timedelta(microseconds=1)):
            return fire.at
        return None

    def __str__(self) -> str:
        return f"fire[{self.schedule.cron or self.schedule.every}]"


class SchedulerThread:
    """APScheduler's ``BackgroundScheduler``: a thread that wakes the engine's loop.

    APScheduler waits on wall-clock instants, so after a clock jump its wake-ups are
    stale; the owner's periodic check (on the loop's monotonic timers) notices the
    jump and calls :meth:`rebuild`.

    Args:
        loop: the loop running the engine.
        wake: called (in ``loop``) at each fire instant.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        wake: Callable[[], Awaitable[None]],
    ) -> None:
        self._loop = loop
        self._wake = wake
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": None,
            },
        )

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self, specs: list[ScheduleSpec]) -> None:
        """Start the thread with one job per schedule."""
        self.rebuild(specs)
        if not self._scheduler.running:
            self._scheduler.start()

    def rebuild(self, specs: list[ScheduleSpec]) -> None:
        """Replace every job: after a reload, a lease change or a clock jump."""
        self._scheduler.remove_all_jobs()
        for spec in specs:
            self._scheduler.add_job(
                self._hand_over,
                FireTrigger(spec.schedule),
                id=spec.id,
                name=spec.id,
            )

    def stop(self) -> None:
        """Stop the thread (jobs are rebuilt from the store at the next start)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def next_run_times(self) -> dict[str, datetime]:
        """Each job's next wake-up, by schedule id."""
        return {
            job.id: job.next_run_time
            for job in self._scheduler.get_jobs()
            if job.next_run_time is not None
        }

    def _hand_over(self) -> None:
        if self._loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self._run_wake(), self._loop)
        try:
            future.result(timeout=300)
        except Exception:
            logger.exception("a scheduled wake-up failed")

    async def _run_wake(self) -> None:
        await self._wake()
