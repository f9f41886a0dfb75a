"""Automation in one process: the lease, ticket-event rules and schedules together.

:class:`Automation` runs in the engine's loop. Every process may run it; only the
lease holder acts. :meth:`Automation.step` is one round (lease, rules, schedules)
and is what tests drive with a manual clock; :meth:`Automation.start` runs rounds
on the loop's (monotonic) timers and, while the lease is held, APScheduler's thread
wakes a round at each schedule's fire instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from haloterm.automation.clock import Clock, SystemClock
from haloterm.automation.lease import LEASE_TTL, RENEW_SECONDS, Lease
from haloterm.automation.rules import RuleRunner
from haloterm.automation.scheduler import ScheduleKeeper, SchedulerThread
from haloterm.engine.events import Notice

if TYPE_CHECKING:
    from haloterm.engine.runner import Engine
    from haloterm.storage import Store

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
"""How often new ticket events are looked for (a cheap ``data_version`` check)."""
TICK_SECONDS = 15.0
RECOVER_SECONDS = 2.0
"""How often the lease holder continues runs no process holds (decided or overdue
approvals, interrupted idempotent steps)."""
"""How often schedules are checked even without a wake-up (catch-up, clock jumps)."""


class Automation:
    """The lease, rules and schedules of one process.

    Args:
        store: the store.
        engine: the engine runs are started in.
        holder: this process's id (its owner id).
        user: the operator running this process.
        clock: wall and monotonic clocks; the system's by default.
        ttl: the lease's TTL in seconds (at most 10).
        renew_seconds: how often the lease is renewed or tried.
        use_thread: wake schedules with APScheduler's thread (off in tests that
            drive :meth:`step` themselves).
    """

    def __init__(
        self,
        store: Store,
        engine: Engine,
        *,
        holder: str,
        user: str,
        clock: Clock | None = None,
        ttl: float = LEASE_TTL,
        renew_seconds: float = RENEW_SECONDS,
        use_thread: bool = True,
    ) -> None:
        self.store = store
        self.engine = engine
        self.clock = clock or SystemClock()
        self.lease = Lease(store, holder, user=user, ttl=ttl)
        self.rules = RuleRunner(store, engine, self.clock, holder=holder)
        self.schedules = ScheduleKeeper(
            store, engine, self.clock, holder=holder, publish=engine.bus.publish
        )
        self.renew_seconds = renew_seconds
        self.use_thread = use_thread
        self._thread: SchedulerThread | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._last_version: int | None = None
        self._last_renew = float("-inf")
        self._last_tick = float("-inf")
        self._last_recover = float("-inf")
        self._paused = False

    @property
    def holding(self) -> bool:
        """Whether this process holds the automation lease."""
        return self.lease.held

    async def status_line(self) -> str:
        """A line for the console: who runs automation."""
        if self.lease.held:
            return "automation runs here"
        other = await self.store.call(self.lease.other_holder)
        if other is not None:
            return other.describe()
        return "automation: no session holds the lease"

    async def step(self, *, force: bool = False) -> None:
        """One round: refresh the lease when due, then (if held) rules and schedules.

        Args:
            force: refresh the lease and check schedules now, whatever the timers.
        """
        mono = self.clock.monotonic()
        if force or mono - self._last_renew >= self.renew_seconds:
            self._last_renew = mono
            held, changed = await self.store.call(self.lease.refresh)
            if changed:
                await self._lease_changed(held)
        if not self.lease.held or self._paused:
            return
        version = await self.store.call(self.store.data_version)
        if force or version != self._last_version:
            self._last_version = version
            while await self.rules.process():
                pass
        if force or mono - self._last_tick >= TICK_SECONDS:
            self._last_tick = mono
            await self._tick(reload=True)
        if force or mono - self._last_recover >= RECOVER_SECONDS:
            self._last_recover = mono
            await self._recover_runs()

    async def _recover_runs(self) -> None:
        """Continue runs that need a process and have none: the lease holder's job."""
        for job in (
            self.engine.adopt_decided_approvals,
            self.engine.resume_idempotent_interrupted,
        ):
            try:
                taken = await job()
            except Exception:
                logger.exception("could not continue ownerless runs (%s)", job.__name__)
                continue
            if taken:
                logger.info("%s: executions %s", job.__name__, taken)

    async def start(self) -> None:
        """Run rounds in the background until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="automation")

    async def stop(self, *, release: bool = True) -> None:
        """Stop acting; give the lease up so another process takes over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._stop_thread()
        if release:
            with contextlib.suppress(Exception):
                await self.store.call(self.lease.release)

    def pause(self) -> None:
        """Stop firing (a draining worker) while keeping the loop alive."""
        self._paused = True
        self._stop_thread()

    async def _loop(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:
                logger.exception("automation round failed")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), POLL_SECONDS)

    async def _tick(self, *, reload: bool) -> None:
        changed = await self.schedules.reload() if reload else False
        jumped = await self.schedules.tick()
        if self._thread is not None and (changed or jumped):
            self._thread.rebuild(list(self.schedules.specs.values()))

    async def _wake(self) -> None:
        if self.lease.held and not self._paused:
            await self._tick(reload=False)

    async def _lease_changed(self, held: bool) -> None:
        if held:
            recovered = await self.rules.recover()
            if recovered:
                logger.info("finished %d rule firings of a previous holder", recovered)
            await self.schedules.reload()
            if self.use_thread:
                self._thread = SchedulerThread(asyncio.get_running_loop(), self._wake)
                self._thread.start(list(self.schedules.specs.values()))
            text = "Automation (rules and schedules) now runs in this session."
        else:
            self._stop_thread()
            text = "Automation moved to another session."
        self.engine.bus.publish(Notice(text, title="Automation"))

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
