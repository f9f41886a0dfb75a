"""The executor: one asyncio task per execution, driving its steps through their states.

The store is the truth: every change is committed before it is published on the bus,
and a run can be rebuilt from its rows (``adopt``) to continue from a given step after
an approval decided elsewhere, a crash, or an operator's resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from haloterm.engine import run_notify
from haloterm.engine.context import EngineContext
from haloterm.engine.events import (
    ApprovalChanged,
    EventBus,
    ExecutionChanged,
    LogLine,
    Notice,
    StepChanged,
    TicketChanged,
)
from haloterm.engine.logpump import LogPump
from haloterm.engine.output import StepOutput
from haloterm.engine.templates import (
    Rendered,
    Renderer,
    SecretValue,
    TemplateError,
    is_templated,
)
from haloterm.masking import SecretMasker, mask_tree
from haloterm.models import (
    Execution,
    ExecutionStatus,
    Goto,
    Runbook,
    RunRunbook,
    Step,
    StepRun,
    StepStatus,
)
from haloterm.params import resolve_params
from haloterm.plugins.base import (
    ActionError,
    ApprovalOutcome,
    ApprovalRequest,
    ChildResult,
    StepResult,
)
from haloterm.storage import Approval, ApprovalRefused

if TYPE_CHECKING:
    from haloterm.config import Settings
    from haloterm.plugins.registry import ActionRegistry
    from haloterm.storage import Store

logger = logging.getLogger(__name__)

MAX_STEP_VISITS = 1000
"""Cap on step executions in one run, so a backward ``goto`` cannot loop forever."""

OWNER_TTL = 10.0
"""Seconds without a heartbeat after which another host's owner counts as dead."""

_RESUMABLE = ("interrupted", "failed", "waiting", "queued", "running")


class StartError(ValueError):
    """A run cannot start: unknown runbook, single-instance busy, depth cap, ..."""


class ClaimLost(StartError):
    """Another process owns the execution (or took it over first)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunState:
    """What the engine keeps in memory for one execution it owns (a cache of rows)."""

    execution_id: int
    runbook: Runbook
    version: int
    operator: str
    trigger: str
    ticket_id: int | None
    parent_id: int | None
    params: dict[str, Any]
    masker: SecretMasker
    secret_names: frozenset[str] = frozenset()
    """Params handled as secrets: the runbook's, and those carrying a parent's."""
    steps: dict[str, StepRun] = field(default_factory=dict)
    task: asyncio.Task[ExecutionStatus] | None = None
    seq: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)
    approval_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str | None = None
    waiting_on: str | None = None
    """The approval step this run waits on now, if any."""
    resumed_wait: str | None = None
    """An approval step taken over while waiting: its stored decision counts."""
    detaching: bool = False
    """This process stops owning the run: a wait is left for others to continue,
    a running step is stopped and the run marked ``interrupted``."""
    notify_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    """Runbook-level notifications in flight, awaited before the final status."""


def _secret_names(book: Runbook, execution: Execution) -> set[str]:
    """The params of an execution kept as secrets: the runbook's, and those a
    child run took on because they carried a parent's secret."""
    return set(book.secret_params) | set(execution.secret_params)


class Engine:
    """Runs executions in the current asyncio loop.

    Args:
        store: the store every change is committed to first.
        registry: the actions steps may use.
        settings: haloterm's settings (limits, channels, inventory).
        bus: where committed changes are published; a new one by default.
        clock: the wall clock (UTC); injected in tests.
        owner_id: this process's owner record id, stamped on executions it runs.
        secrets: named secrets (secrets file, environment); masked in every run.
    """

    def __init__(
        self,
        store: Store,
        *,
        registry: ActionRegistry,
        settings: Settings,
        bus: EventBus | None = None,
        clock: Callable[[], datetime] = utc_now,
        owner_id: str | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.bus = bus or EventBus()
        self.clock = clock
        self.owner_id = owner_id
        self.secrets = dict(secrets or {})
        self.renderer = Renderer()
        self.logs = LogPump(store, self.bus)
        self.spool_dir: Path | None = None
        from haloterm.storage.approvals import terminal_origin

        self.origin = terminal_origin()
        """Where this process acts from, recorded with approvals."""
        self._runs: dict[int, RunState] = {}

    # ------------------------------------------------------------------ public API

    @property
    def active(self) -> list[int]:
        """Ids of the executions this engine is running now."""
        return [i for i, r in self._runs.items() if r.task and not r.task.done()]

    async def start(
        self,
        runbook: str,
        params: Mapping[str, Any],
        *,
        operator: str,
        trigger: str = "manual",
        ticket_id: int | None = None,
        version: int | None = None,
        parent: tuple[int, str] | None = None,
        carried: SecretMasker | None = None,
    ) -> int:
        """Validate, record and start an execution; returns its id.

        Args:
            carried: the parent's masker, for a child run: a param whose value
                holds one of the parent's secrets is kept like a secret param
                (never stored), whatever type the child declares.

        Raises:
            StartError: no such runbook (or version), or a single-instance runbook is
                already running.
            haloterm.params.ParamError: params missing or invalid.
        """
        stored = await self.store.call(self.store.get_runbook, runbook, version)
        if stored is None:
            which = f"{runbook} version {version}" if version else runbook
            raise StartError(f"no runbook named {which!r}")
        book = stored.runbook
        values = resolve_params(book, params)
        self._check_channels(book)
        if book.single_instance:
            busy = await self.store.call(self.store.running_executions_of, book.name)
            if busy:
                ids = ", ".join(str(e.id) for e in busy)
                raise StartError(
                    f"{book.name} is single-instance and already running "
                    f"(execution {ids})"
                )
        if ticket_id is not None and await self._ticket(ticket_id) is None:
            raise StartError(f"no ticket {ticket_id}")

        hidden = set(book.secret_params)
        if carried is not None:
            hidden |= {
                name
                for name, value in values.items()
                if value is not None and carried.mask(str(value)) != str(value)
            }
        secret_names = sorted(hidden)
        stored_params = {k: v for k, v in values.items() if k not in hidden}
        execution = await self.store.call(
            self.store.create_execution,
            runbook=book.name,
            version=stored.version,
            params=stored_params,
            secret_params=secret_names,
            trigger=trigger,
            operator=operator,
            ticket_id=ticket_id,
            parent_id=parent[0] if parent else None,
            parent_step=parent[1] if parent else None,
            owner_id=self.owner_id,
            step_ids=[s.id for s in book.steps],
        )
        run = self._new_state(execution, book, values)
        for step in book.steps:
            run.steps[step.id] = StepRun(execution_id=execution.id, step_id=step.id)
        self._publish_execution(execution)
        logger.info(
            "execution %s queued: %s v%s by %s (%s)",
            execution.id,
            book.name,
            stored.version,
            operator,
            trigger,
        )
        self._launch(run, start_at=0)
        return execution.id

    def _check_channels(self, book: Runbook) -> None:
        """Refuse a run whose notifications name a channel the config lacks: better
        than failing at that step, after the steps before it changed things."""
        from haloterm.plugins.notify import resolve_channel

        wanted: list[tuple[str, object]] = [
            (f"notify[{index}]", entry.channel)
            for index, entry in enumerate(book.notify)
        ]
        wanted += [
            (f"step {step.id}", step.with_.get("channel"))
            for step in book.steps
            if step.action == "notify"
        ]
        for where, spec in wanted:
            if not isinstance(spec, str) or is_templated(spec):
                continue
            try:
                resolve_channel(spec, self.settings)
            except ActionError as exc:
                config = self.settings.source or "the config file"
                raise StartError(
                    f"{book.name}: {where}: {exc} (channels are [notify.<name>] "
                    f"tables in {config})"
                ) from None

    async def wait(self, execution_id: int) -> ExecutionStatus:
        """Wait until an execution this engine runs ends; returns its final status."""
        run = self._runs.get(execution_id)
        if run is not None and run.task is not None:
            return await asyncio.shield(run.task)
        execution = await self.store.call(self.store.get_execution, execution_id)
        if execution is None:
            raise StartError(f"no execution {execution_id}")
        return execution.status

    async def wait_until(
        self, execution_id: int, statuses: set[ExecutionStatus]
    ) -> ExecutionStatus:
        """Wait until an execution run here reaches one of ``statuses`` or ends."""
        reached: asyncio.Future[ExecutionStatus] = (
            asyncio.get_running_loop().create_future()
        )

        def watch(event: object) -> None:
            if (
                isinstance(event, ExecutionChanged)
                and event.execution_id == execution_id
                and not reached.done()
            ):
                status = ExecutionStatus(event.status)
                if status in statuses or status.finished:
                    reached.set_result(status)

        unsubscribe = self.bus.subscribe(watch)
        try:
            execution = await self.store.call(self.store.get_execution, execution_id)
            if execution and (
                execution.status in statuses or execution.status.finished
            ):
                return execution.status
            run = self._runs.get(execution_id)
            if run is None or run.task is None:
                return execution.status if execution else ExecutionStatus.INTERRUPTED
            done, _ = await asyncio.wait(
                {reached, run.task}, return_when=asyncio.FIRST_COMPLETED
            )
            if reached in done:
                return reached.result()
            return run.task.result()
        finally:
            unsubscribe()
            if not reached.done():
                reached.cancel()

    async def cancel(
        self, execution_id: int, *, actor: str, reason: str | None = None
    ) -> bool:
        """Cancel an execution. Returns False when it had already finished.

        An execution this process runs is stopped at once (its step's processes are
        stopped). One that another live process runs gets a cancel request in the
        store, which its owner takes within a second (see :meth:`take_cancels`).
        One without a live owner is marked cancelled in the store.
        """
        execution = await self.store.call(self.store.get_execution, execution_id)
        if execution is None:
            raise StartError(f"no execution {execution_id}")
        if execution.status.finished:
            return False
        await self.store.call(
            self.store.audit,
            actor=actor,
            action="execution.cancel",
            target_type="execution",
            target_id=str(execution_id),
            detail={"reason": reason} if reason else None,
        )
        run = self._runs.get(execution_id)
        why = f"cancelled by {actor}" + (f": {reason}" if reason else "")
        if run is not None and run.task is not None and not run.task.done():
            run.cancel_reason = why
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(run.task)
            await self.store.call(
                self.store.close_approvals, execution_id, actor=actor, reason=why
            )
            return True
        owner = execution.owner_id
        if owner and owner in await self.store.call(self.store.live_owner_ids):
            await self.store.call(
                self.store.request_cancel, execution_id, actor=actor, reason=reason
            )
            return True
        await self.store.call(
            self.store.close_approvals, execution_id, actor=actor, reason=why
        )
        await self._finish_orphan(execution, ExecutionStatus.CANCELLED, why)
        return True

    async def take_cancels(self) -> list[int]:
        """Carry out cancels other processes asked for on runs this process owns.

        Returns:
            The ids of the executions cancelled.
        """
        requests = await self.store.call(self.store.take_cancel_requests, self.active)
        for execution_id, actor, reason in requests:
            run = self._runs.get(execution_id)
            if run is None or run.task is None or run.task.done():
                continue
            run.cancel_reason = f"cancelled by {actor}" + (
                f": {reason}" if reason else ""
            )
            run.task.cancel()
        for execution_id, actor, _ in requests:
            run = self._runs.get(execution_id)
            if run is not None and run.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(run.task)
            await self.store.call(
                self.store.close_approvals,
                execution_id,
                actor=actor,
                reason=f"cancelled by {actor}",
            )
        return [r[0] for r in requests]

    async def decide(
        self,
        execution_id: int,
        step_id: str,
        *,
        actor: str,
        decision: Literal["approved", "rejected"],
        comment: str | None = None,
        continue_here: bool = True,
    ) -> Approval:
        """Record an approval decision (compare-and-set) and wake the waiting run.

        A run whose owner is gone (a waiting run needs no process) continues in
        this process once the decision settles the approval, unless
        ``continue_here`` is False (the caller then calls
        :meth:`continue_decided` itself, to report why it could not).

        Raises:
            haloterm.storage.ApprovalRefused: not an approver, own run, already decided
                or timed out; its message says which.
            ValueError: a rejection without a comment.
        """
        if decision == "rejected" and not (comment and comment.strip()):
            raise ValueError("a rejection needs a comment")
        roles = self.settings.roles_of(actor)
        try:
            approval = await self.store.call(
                self.store.decide_approval,
                execution_id,
                step_id,
                actor=actor,
                decision=decision,
                comment=comment,
                roles=roles,
                origin=self.origin,
            )
        except ApprovalRefused as refused:
            # A refused attempt is part of the record too: who tried, from where.
            await self.store.call(
                self.store.audit,
                actor=actor,
                action="approval.refused",
                target_type="execution",
                target_id=execution_id,
                detail={
                    "step": step_id,
                    "decision": decision,
                    "reason": refused.reason,
                },
                origin=self.origin,
            )
            raise
        self.bus.publish(
            ApprovalChanged(execution_id, step_id, approval.status, decided_by=actor)
        )
        run = self._runs.get(execution_id)
        if run is not None:
            run.approval_wakeup.set()
        elif continue_here and approval.status != "waiting":
            try:
                await self.continue_decided(execution_id, actor=actor)
            except StartError as exc:
                logger.warning("execution %s not continued here: %s", execution_id, exc)
                self.bus.publish(
                    Notice(
                        text=(
                            f"Run #{execution_id} was {approval.status} but cannot "
                            f"continue in this console: {exc}. It waits; "
                            f"`haloterm resume {execution_id}` continues it."
                        ),
                        severity="warning",
                        title="Not continued",
                    )
                )
        return approval

    async def continue_decided(self, execution_id: int, *, actor: str) -> bool:
        """Continue a decided waiting run whose owner is gone, in this process.

        See :func:`haloterm.engine.recovery.continue_decided`.
        """
        from haloterm.engine import recovery

        return await recovery.continue_decided(self, execution_id, actor=actor)

    async def adopt_decided_approvals(self) -> list[int]:
        """Continue waiting runs no process holds that need one now (decided,
        overdue, reminder due); for the automation lease holder to call
        periodically. See :func:`haloterm.engine.recovery.adopt_decided_approvals`.
        """
        from haloterm.engine import recovery

        return await recovery.adopt_decided_approvals(self)

    async def resume_idempotent_interrupted(self) -> list[int]:
        """Resume interrupted runs stopped at an ``idempotent`` step; for the
        automation lease holder to call periodically. See
        :func:`haloterm.engine.recovery.resume_idempotent_interrupted`.
        """
        from haloterm.engine import recovery

        return await recovery.resume_idempotent_interrupted(self)

    async def adopt(
        self,
        execution_id: int,
        *,
        from_step: str | None = None,
        actor: str,
        secrets: Mapping[str, str] | None = None,
        statuses: tuple[str, ...] | None = None,
    ) -> int:
        """Take over an execution no live process runs, and continue it.

        Continues at ``from_step``, or at the step it stopped on (an approval decided
        while no process was waiting, an interrupted step), with the runbook
        version and params it was started with. Steps before it keep their
        recorded outcomes. Secret params are taken from ``secrets`` or the named
        secrets again. Taking over is a compare-and-set in the store, so of several
        processes trying at once exactly one continues the run.

        Args:
            execution_id: the execution.
            from_step: the step to continue from; default where it stopped.
            actor: who resumes it (audited).
            secrets: values of secret params for this run (asked of an operator).
            statuses: the statuses it may be taken over from; by default any
                unfinished or failed one. A succeeded or cancelled run is never
                resumed: its record stands as it ended.

        Raises:
            ClaimLost: another process owns it now (a :class:`StartError`).
            StartError: the execution is running elsewhere, finished successfully, or
                needs secret values that are not available.
        """
        execution = await self.store.call(self.store.get_execution, execution_id)
        if execution is None:
            raise StartError(f"no execution {execution_id}")
        if execution_id in self.active:
            raise StartError(f"execution {execution_id} is already running here")
        if execution.status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.CANCELLED):
            # Its record stands as it ended; running it again is a new run.
            raise StartError(
                f"execution {execution_id} {execution.status.value}: start a new run "
                f"of {execution.runbook} instead of resuming it"
            )
        allowed = statuses or _RESUMABLE
        stored = await self.store.call(
            self.store.get_runbook, execution.runbook, execution.version
        )
        if stored is None:
            raise StartError(
                f"runbook {execution.runbook} v{execution.version} is gone"
            )
        book = stored.runbook
        values = dict(execution.params)
        given = {**self.secrets, **(secrets or {})}
        hidden = _secret_names(book, execution)
        missing = sorted(n for n in hidden if n not in given)
        if missing:
            raise StartError(
                "secret params needed again to continue: "
                + ", ".join(missing)
                + " (set HALOTERM_SECRET_<NAME> or the secrets file)"
            )
        for name in hidden:
            values[name] = given[name]

        step_id = from_step or execution.current_step or book.steps[0].id
        try:
            index = book.step_index(step_id)
        except KeyError:
            raise StartError(f"{book.name} has no step {step_id!r}") from None
        claimed = await self.store.call(
            self.store.claim_execution,
            execution_id,
            owner_id=self.owner_id,
            statuses=allowed,
            ttl=OWNER_TTL,
        )
        if claimed is None:
            raise ClaimLost(
                f"execution {execution_id} is run by another process or has moved on"
            )
        execution = claimed
        run = self._new_state(execution, book, values)
        for record in await self.store.call(self.store.step_runs, execution_id):
            if record.host == "":
                run.steps[record.step_id] = record
        first = itertools.count(
            await self.store.call(self.store.max_log_seq, execution_id) + 1
        )
        run.seq = first.__next__
        # Steps from the resume point on start over, except a waiting approval.
        for step in book.steps[index:]:
            current = run.steps.get(step.id)
            keep = current is not None and current.status is StepStatus.WAITING
            if keep:
                run.resumed_wait = step.id
            else:
                run.steps[step.id] = StepRun(execution_id=execution_id, step_id=step.id)
        await self.store.call(
            self.store.audit,
            actor=actor,
            action="execution.resume",
            target_type="execution",
            target_id=str(execution_id),
            detail={"from_step": step_id, "version": execution.version},
        )
        self._publish_execution(execution)
        logger.info(
            "execution %s continues at %s (v%s) here, by %s",
            execution_id,
            step_id,
            execution.version,
            actor,
        )
        self._launch(run, start_at=index, resumed=True)
        return execution_id

    async def resume(
        self,
        execution_id: int,
        *,
        actor: str,
        from_step: str | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> int:
        """Continue an interrupted, failed or waiting execution (see :meth:`adopt`)."""
        return await self.adopt(
            execution_id, from_step=from_step, actor=actor, secrets=secrets
        )

    async def missing_secrets(self, execution_id: int) -> list[str]:
        """Secret params an execution needs again that this process does not have."""
        execution = await self.store.call(self.store.get_execution, execution_id)
        if execution is None:
            return []
        stored = await self.store.call(
            self.store.get_runbook, execution.runbook, execution.version
        )
        if stored is None:
            return []
        hidden = _secret_names(stored.runbook, execution)
        return sorted(n for n in hidden if n not in self.secrets)

    async def shutdown(self, *, detach: bool = True) -> None:
        """Stop owning runs.

        With ``detach`` (the default) a run waiting for an approval is left waiting,
        with no owner, for whoever decides to continue; a running step is stopped
        (its processes too) and the run marked ``interrupted``, resumable from that
        step. Without it every run is cancelled.
        """
        for execution_id in self.active:
            run = self._runs[execution_id]
            assert run.task is not None
            if detach:
                run.detaching = True
                run.cancel_reason = "interrupted: haloterm stopped in this process"
            else:
                run.cancel_reason = "haloterm is shutting down"
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task
        await self.logs.flush()

    # ---------------------------------------------------------------- the run loop

    def _new_state(
        self, execution: Execution, book: Runbook, values: dict[str, Any]
    ) -> RunState:
        hidden = _secret_names(book, execution)
        secrets = [str(values[n]) for n in hidden if values.get(n)]
        masker = SecretMasker([*secrets, *self.secrets.values()])
        run = RunState(
            execution_id=execution.id,
            runbook=book,
            version=execution.version,
            operator=execution.operator,
            trigger=execution.trigger,
            ticket_id=execution.ticket_id,
            parent_id=execution.parent_id,
            params=values,
            masker=masker,
            secret_names=frozenset(hidden),
        )
        self._runs[execution.id] = run
        return run

    def _launch(self, run: RunState, *, start_at: int, resumed: bool = False) -> None:
        run.task = asyncio.create_task(
            self._execute(run, start_at, resumed), name=f"execution-{run.execution_id}"
        )

    async def _execute(
        self, run: RunState, start_at: int, resumed: bool = False
    ) -> ExecutionStatus:
        if resumed:
            await self._set_execution(run, status=ExecutionStatus.RUNNING)
        else:
            await self._set_execution(
                run, status=ExecutionStatus.RUNNING, started_at=self.clock()
            )
            run_notify.announce(self, run, "start", status="running")
        try:
            status, reason = await self._walk(run, start_at)
        except asyncio.CancelledError:
            if run.detaching:
                return await self._detach(run)
            status, reason = ExecutionStatus.CANCELLED, run.cancel_reason or "cancelled"
        except Exception as exc:
            logger.exception("execution %s crashed", run.execution_id)
            status, reason = (
                ExecutionStatus.FAILED,
                run.masker.mask(f"internal error: {exc}"),
            )
        if status is ExecutionStatus.SUCCEEDED:
            reason = _handled_failures(run)
            run_notify.announce(self, run, "success", status=status.value)
        else:
            run_notify.announce(
                self, run, "failure", status=status.value, reason=reason
            )
        await self._skip_unreached(run)
        await self._release(run)
        await run_notify.settle(run)
        await self.logs.flush()
        await self._set_execution(
            run, status=status, reason=reason, finished_at=self.clock()
        )
        logger.info("execution %s %s", run.execution_id, status.value)
        self._runs.pop(run.execution_id, None)
        return status

    async def _detach(self, run: RunState) -> ExecutionStatus:
        await self._release(run)
        await run_notify.settle(run)
        await self.logs.flush()
        if run.waiting_on is not None:
            status = ExecutionStatus.WAITING
            await self._set_execution(run, owner_id=None)
        else:
            status = ExecutionStatus.INTERRUPTED
            await self._set_execution(
                run, status=status, reason=run.cancel_reason, finished_at=self.clock()
            )
        logger.info("execution %s left %s", run.execution_id, status.value)
        self._runs.pop(run.execution_id, None)
        return status

    async def _release(self, run: RunState) -> None:
        for name in {step.action for step in run.runbook.steps}:
            try:
                await self.registry.get(name).release(run.execution_id)
            except Exception:
                logger.exception(
                    "action %s failed to release execution %s", name, run.execution_id
                )

    async def _walk(
        self, run: RunState, index: int
    ) -> tuple[ExecutionStatus, str | None]:
        steps = run.runbook.steps
        branched = False
        visits = 0
        while index < len(steps):
            step = steps[index]
            visits += 1
            if visits > MAX_STEP_VISITS:
                return (
                    ExecutionStatus.FAILED,
                    f"more than {MAX_STEP_VISITS} steps run: goto loop?",
                )
            if step.only_on_failure and not branched:
                index += 1
                continue
            branched = False
            passed = await self._run_step(run, step)
            if passed:
                index += 1
                continue
            policy = step.on_failure
            if policy == "continue":
                index += 1
            elif isinstance(policy, Goto):
                target = run.runbook.step_index(policy.goto)
                self._info(run, step.id, f"on failure: going to step {policy.goto}")
                await self._skip_between(
                    run, index + 1, target, f"skipped by goto {policy.goto}"
                )
                index, branched = target, True
            elif isinstance(policy, RunRunbook):
                self._info(run, step.id, f"on failure: running runbook {policy.run}")
                child = await self.run_child(run, step.id, policy.run, {})
                if child.status != ExecutionStatus.SUCCEEDED.value:
                    return ExecutionStatus.FAILED, (
                        f"step {step.id} failed and recovery runbook {policy.run} "
                        f"{child.status}"
                    )
                index += 1
            else:
                reason = run.steps[step.id].reason or "failed"
                return ExecutionStatus.FAILED, f"step {step.id} failed: {reason}"
        return ExecutionStatus.SUCCEEDED, None

    async def _run_step(self, run: RunState, step: Step) -> bool:
        """Run one step through its attempts; returns whether it passed."""
        record = run.steps[step.id]
        await self._set_execution(run, current_step=step.id)
        if record.status is StepStatus.WAITING:
            record.status = StepStatus.RUNNING  # resumed approval: re-enter the wait
        context = self._template_context(run, await self._ticket(run.ticket_id))

        if step.when is not None:
            try:
                go = self.renderer.condition(step.when, context)
            except TemplateError as exc:
                await self._finish_step(
                    run, step, StepResult.fail(self._mask(run, exc))
                )
                return False
            if not go:
                await self._update_step(
                    run,
                    step.id,
                    status=StepStatus.SKIPPED,
                    reason="condition is false",
                    started_at=self.clock(),
                    finished_at=self.clock(),
                )
                return True

        action = self.registry.get(step.action)
        attempts = step.retries.count + 1
        delay = step.retries.delay
        result = StepResult.fail("not run")
        for attempt in range(1, attempts + 1):
            context = self._template_context(run, await self._ticket(run.ticket_id))
            try:
                rendered = self.renderer.render(
                    step.with_, context, command_fields=action.command_fields
                )
                inputs = action.Inputs.model_validate(rendered.value)
            except (TemplateError, ValidationError) as exc:
                result = StepResult.fail(self._mask(run, _short_error(exc)))
                break
            await self._update_step(
                run,
                step.id,
                status=StepStatus.RUNNING,
                attempts=attempt,
                started_at=self.clock() if attempt == 1 else record.started_at,
                reason=None,
                exit_code=None,
                signal=None,
            )
            result = await self._attempt(run, step, action, inputs, attempt, rendered)
            if result.passed or attempt == attempts:
                break
            self._info(
                run,
                step.id,
                f"attempt {attempt} of {attempts} failed ({result.reason}); "
                f"retrying in {delay:g}s",
            )
            await asyncio.sleep(delay)
            delay *= step.retries.backoff
        await self._finish_step(run, step, result)
        return result.passed

    async def _attempt(
        self,
        run: RunState,
        step: Step,
        action: Any,
        inputs: Any,
        attempt: int,
        rendered: Rendered,
    ) -> StepResult:
        deadline = time.monotonic() + step.timeout if step.timeout else None
        ctx = EngineContext(
            self,
            run,
            step.id,
            attempt,
            deadline,
            rendered.secret_env,
            rendered.value_env,
        )
        try:
            async with asyncio.timeout(step.timeout):
                result: StepResult = await action.run(inputs, ctx)
        except TimeoutError:
            note = f" ({ctx.cancel_note})" if ctx.cancel_note else ""
            result = StepResult.fail(f"timeout after {step.timeout:g}s{note}")
        except ActionError as exc:
            result = StepResult.fail(
                self._mask(run, exc.reason), exit_code=exc.exit_code
            )
        except asyncio.CancelledError:
            summary = ctx.close_outputs()
            if run.detaching and run.waiting_on == step.id:
                raise  # the approval keeps waiting for whoever decides
            note = f" ({ctx.cancel_note})" if ctx.cancel_note else ""
            await self._update_step(
                run,
                step.id,
                status=StepStatus.FAILED,
                reason=(run.cancel_reason or "cancelled") + note,
                finished_at=self.clock(),
                outputs=summary,
            )
            raise
        except Exception as exc:
            ctx.log.exception("action %s raised", step.action)
            result = StepResult.fail(self._mask(run, f"{type(exc).__name__}: {exc}"))
        summary = ctx.close_outputs()
        result.outputs = {**summary, **result.outputs}
        result.reason = self._mask(run, result.reason) if result.reason else None
        return result

    async def _finish_step(self, run: RunState, step: Step, result: StepResult) -> None:
        outputs = mask_tree(result.outputs, run.masker.mask)
        record = run.steps[step.id]
        # A step's lines are stored and shown before the step is shown as finished.
        await self.logs.flush()
        await self._update_step(
            run,
            step.id,
            status=StepStatus.PASSED if result.passed else StepStatus.FAILED,
            reason=result.reason,
            exit_code=result.exit_code,
            signal=result.signal,
            outputs=outputs,
            output_file=outputs.get("output_file"),
            output_bytes=int(outputs.get("output_bytes") or 0),
            output_truncated=bool(outputs.get("output_truncated")),
            started_at=record.started_at or self.clock(),
            finished_at=self.clock(),
        )

    # --------------------------------------------------------------- step records

    async def _update_step(self, run: RunState, step_id: str, **changes: Any) -> None:
        record = run.steps[step_id].model_copy(update=changes)
        run.steps[step_id] = record
        await self.store.call(self.store.save_step_run, record)
        self._publish_step(record)

    async def record_host(
        self,
        run: RunState,
        step_id: str,
        host: str,
        status: StepStatus,
        reason: str | None,
        exit_code: int | None,
        signal: str | None,
    ) -> None:
        """Commit and publish the status of one host of a fan-out step."""
        now = self.clock()
        record = StepRun(
            execution_id=run.execution_id,
            step_id=step_id,
            host=host,
            status=status,
            reason=run.masker.mask(reason) if reason else None,
            exit_code=exit_code,
            signal=signal,
            started_at=now if status is StepStatus.RUNNING else None,
            finished_at=now if status.finished else None,
        )
        await self.store.call(self.store.save_step_run, record)
        self._publish_step(record)

    async def _skip_between(
        self, run: RunState, start: int, stop: int, reason: str
    ) -> None:
        for step in run.runbook.steps[start:stop]:
            if run.steps[step.id].status is StepStatus.PENDING:
                await self._update_step(
                    run, step.id, status=StepStatus.SKIPPED, reason=reason
                )

    async def _skip_unreached(self, run: RunState) -> None:
        with contextlib.suppress(Exception):
            for step in run.runbook.steps:
                if run.steps[step.id].status is StepStatus.PENDING:
                    why = "only on failure" if step.only_on_failure else "not reached"
                    await self._update_step(
                        run, step.id, status=StepStatus.SKIPPED, reason=why
                    )

    async def _set_execution(self, run: RunState, **changes: Any) -> None:
        values = {
            k: (v.value if isinstance(v, ExecutionStatus) else v)
            for k, v in changes.items()
        }
        execution = await self.store.call(
            self.store.update_execution, run.execution_id, **values
        )
        self._publish_execution(execution)

    async def _finish_orphan(
        self, execution: Execution, status: ExecutionStatus, reason: str
    ) -> None:
        for record in await self.store.call(self.store.step_runs, execution.id):
            if not record.status.finished:
                failed = record.model_copy(
                    update={
                        "status": StepStatus.FAILED,
                        "reason": reason,
                        "finished_at": self.clock(),
                    }
                )
                await self.store.call(self.store.save_step_run, failed)
                self._publish_step(failed)
        updated = await self.store.call(
            self.store.update_execution,
            execution.id,
            status=status.value,
            reason=reason,
            finished_at=self.clock(),
        )
        self._publish_execution(updated)

    def _publish_step(self, record: StepRun) -> None:
        self.bus.publish(
            StepChanged(
                execution_id=record.execution_id,
                step_id=record.step_id,
                host=record.host,
                status=record.status.value,
                reason=record.reason,
                attempts=record.attempts,
                exit_code=record.exit_code,
                signal=record.signal,
                started_at=record.started_at,
                finished_at=record.finished_at,
            )
        )

    def _publish_execution(self, execution: Execution) -> None:
        self.bus.publish(
            ExecutionChanged(
                execution_id=execution.id,
                runbook=execution.runbook,
                status=execution.status.value,
                ticket_id=execution.ticket_id,
                parent_id=execution.parent_id,
                current_step=execution.current_step,
                reason=execution.reason,
            )
        )

    # ------------------------------------------------------------------- output

    def new_step_output(self, run: RunState, step_id: str, host: str) -> StepOutput:
        """An output collector for one step (or host) that feeds the log pump."""
        spool = None
        if self.spool_dir is not None:
            name = f"{run.execution_id}-{step_id}{'-' + host if host else ''}.log"
            spool = self.spool_dir / name.replace("/", "_")
        return StepOutput(
            execution_id=run.execution_id,
            step_id=step_id,
            host=host,
            masker=run.masker,
            emit=self.logs.add,
            live=self.logs.add_live,
            next_seq=run.seq,
            clock=self.clock,
            spool_path=spool,
            spool_cap=self.settings.output_cap_bytes,
            store_tail_lines=self.settings.stored_tail_lines,
        )

    def _info(self, run: RunState, step_id: str, text: str) -> None:
        line = LogLine(
            execution_id=run.execution_id,
            step_id=step_id,
            host="",
            stream="info",
            seq=run.seq(),
            at=self.clock(),
            text=run.masker.mask(text),
        )
        self.logs.add([line])

    # ------------------------------------------------------------- templates

    def _template_context(self, run: RunState, ticket: Any) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, value in run.params.items():
            if name in run.secret_names and value is not None:
                params[name] = SecretValue(name, str(value))
            else:
                params[name] = value
        steps = StepsView(run.steps)
        return {
            "params": params,
            "ticket": ticket,
            "steps": steps,
            "runbook": {
                "name": run.runbook.name,
                "title": run.runbook.display_title,
                "version": run.version,
            },
            "execution": {
                "id": run.execution_id,
                "operator": run.operator,
                "trigger": run.trigger,
                "parent_id": run.parent_id,
            },
        }

    async def _ticket(self, ticket_id: int | None) -> dict[str, Any] | None:
        if ticket_id is None:
            return None
        ticket = await self.store.call(self.store.get_ticket, ticket_id)
        return ticket.model_dump(mode="json") if ticket else None

    @staticmethod
    def _mask(run: RunState, value: object) -> str:
        return run.masker.mask(str(value))

    # ------------------------------------------------------- services for actions

    async def run_child(
        self, run: RunState, step_id: str, runbook: str, params: dict[str, Any]
    ) -> ChildResult:
        """Start a child execution of ``run`` at ``step_id`` and wait for it."""
        chain = await self._call_chain(run)
        limit = self.settings.max_child_depth
        if len(chain) >= limit:
            path = " → ".join([*chain, runbook])
            raise ActionError(f"child runbook depth cap {limit} reached: {path}")
        try:
            child_id = await self.start(
                runbook,
                params,
                operator=run.operator,
                trigger=f"runbook:{run.runbook.name}#{run.execution_id}",
                ticket_id=run.ticket_id,
                parent=(run.execution_id, step_id),
                carried=run.masker,
            )
        except (StartError, ValueError) as exc:
            raise ActionError(f"child runbook {runbook}: {exc}") from None
        self._info(run, step_id, f"started child execution {child_id} ({runbook})")
        try:
            status = await self.wait(child_id)
        except asyncio.CancelledError:
            await self.cancel(child_id, actor=run.operator, reason="parent cancelled")
            raise
        child = await self.store.call(self.store.get_execution, child_id)
        outputs: dict[str, Any] = {}
        for record in await self.store.call(self.store.step_runs, child_id):
            if record.host == "":
                outputs[record.step_id] = {
                    "status": record.status.value,
                    "reason": record.reason,
                    "exit_code": record.exit_code,
                    "output": record.outputs.get("output", ""),
                    "outputs": record.outputs,
                }
        return ChildResult(
            execution_id=child_id,
            status=status.value,
            outputs=outputs,
            reason=child.reason if child else None,
        )

    async def _call_chain(self, run: RunState) -> list[str]:
        chain = [run.runbook.name]
        parent_id = run.parent_id
        while parent_id is not None and len(chain) <= self.settings.max_child_depth:
            parent = await self.store.call(self.store.get_execution, parent_id)
            if parent is None:
                break
            chain.insert(0, parent.runbook)
            parent_id = parent.parent_id
        return chain

    async def wait_for_approval(
        self, run: RunState, step_id: str, request: ApprovalRequest
    ) -> ApprovalOutcome:
        """Put a step in ``waiting`` until its approval is decided or times out.

        See :func:`haloterm.engine.approvals.wait_for_approval`.
        """
        from haloterm.engine import approvals

        return await approvals.wait_for_approval(self, run, step_id, request)

    async def update_ticket(
        self, run: RunState, ticket_id: int, **changes: Any
    ) -> None:
        """Change a ticket on behalf of a run, and publish the change."""
        await self.store.call(
            self.store.update_ticket,
            ticket_id,
            actor=f"{run.operator} (execution {run.execution_id})",
            **changes,
        )
        self.bus.publish(TicketChanged(ticket_id, "updated"))

    async def create_ticket(self, run: RunState, values: dict[str, Any]) -> int:
        """Open a ticket on behalf of a run, and publish it."""
        ticket_id: int = await self.store.call(
            self.store.create_ticket,
            actor=f"{run.operator} (execution {run.execution_id})",
            source=f"execution:{run.execution_id}",
            **values,
        )
        self.bus.publish(TicketChanged(ticket_id, "created"))
        return ticket_id


class StepsView(Mapping[str, dict[str, Any]]):
    """``steps`` in templates: each step's record, built only when a template reads it
    (a long runbook would otherwise rebuild every step's view before every step)."""

    def __init__(self, records: Mapping[str, StepRun]) -> None:
        self._records = records

    def __getitem__(self, step_id: str) -> dict[str, Any]:
        rec = self._records[step_id]
        return {
            "status": rec.status.value,
            "reason": rec.reason,
            "exit_code": rec.exit_code,
            "signal": rec.signal,
            "attempts": rec.attempts,
            "output": rec.outputs.get("output", ""),
            "outputs": rec.outputs,
        }

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


def _handled_failures(run: RunState) -> str | None:
    """For a run that succeeded past failed steps, say which (a rollback that ran is
    not the same as a restart that worked, mid-incident)."""
    failed = [
        step.id
        for step in run.runbook.steps
        if run.steps[step.id].status is StepStatus.FAILED
    ]
    if not failed:
        return None
    return "succeeded after handling failed steps: " + ", ".join(failed)


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            parts.append(f"with.{where}: {err['msg']}" if where else err["msg"])
        return "; ".join(parts)
    return str(exc)
