"""Approval waits: what the approver is shown, reminders, escalation and timeouts.

An approval's whole state is in the store (its deadline a UTC instant, how its
timeout goes on, whether the reminder went out), so whichever process holds the
wait (the one that started the run, the one that decided it, the automation lease
holder after a restart) carries it on from where it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from haloterm.engine import run_notify
from haloterm.engine.events import ApprovalChanged, Notice
from haloterm.engine.templates import shown_with_values
from haloterm.masking import mask_tree
from haloterm.models import ExecutionStatus, StepStatus
from haloterm.plugins.base import ApprovalOutcome, ApprovalRequest
from haloterm.storage import Approval, ApprovalRefused

if TYPE_CHECKING:
    from haloterm.engine.runner import Engine, RunState

REMINDER_AT = 0.8
"""Share of an approval's timeout after which a reminder goes out."""

_NEXT_SHOWN = 3


async def wait_for_approval(
    engine: Engine, run: RunState, step_id: str, request: ApprovalRequest
) -> ApprovalOutcome:
    """Put a step in ``waiting`` until its approval is decided or times out.

    The request is stored with what the approver is shown (the message, the
    steps that run next with their masked inputs, the masked params), its
    deadline as a UTC instant, and how the timeout goes on, so any process can
    continue the wait: after a restart it waits only for the time left.
    """
    approval = await engine.store.call(
        engine.store.get_approval, run.execution_id, step_id
    )
    resumed = run.resumed_wait == step_id
    run.resumed_wait = None
    if approval is None or (approval.status != "waiting" and not resumed):
        deadline = (
            engine.clock() + timedelta(seconds=request.timeout)
            if request.timeout
            else None
        )
        await engine.store.call(
            engine.store.create_approval,
            execution_id=run.execution_id,
            step_id=step_id,
            approvers=request.approvers,
            message=run.masker.mask(request.message),
            deadline=deadline,
            min_approvals=request.min_approvals,
            allow_self_approval=request.allow_self_approval,
            requested_by=await _requested_by(engine, run),
            summary=await _approval_summary(engine, run, step_id),
            on_timeout=request.on_timeout,
            escalate_to=request.escalate_to,
            timeout_seconds=request.timeout,
            origin=engine.origin,
        )
        approval = await engine.store.call(
            engine.store.get_approval, run.execution_id, step_id
        )
        assert approval is not None
    if approval.status == "waiting":
        run.waiting_on = step_id
        await engine._update_step(run, step_id, status=StepStatus.WAITING)
        await engine._set_execution(run, status=ExecutionStatus.WAITING)
        engine.bus.publish(ApprovalChanged(run.execution_id, step_id, "waiting"))
        if not resumed:
            run_notify.announce(engine, run, "waiting", status="waiting", step=step_id)
        approval = await _await_decision(engine, run, step_id)
        run.waiting_on = None
        await engine._update_step(run, step_id, status=StepStatus.RUNNING)
        await engine._set_execution(run, status=ExecutionStatus.RUNNING)
    deciders = approval.deciders
    if approval.status == "approved":
        return ApprovalOutcome("approved", deciders, approval.comment)
    if approval.status == "rejected":
        return ApprovalOutcome("rejected", deciders, approval.comment)
    if approval.on_timeout == "approve" or request.on_timeout == "approve":
        return ApprovalOutcome("approved", ["haloterm (on timeout)"], approval.comment)
    return ApprovalOutcome("timed_out", [], approval.comment)


async def _approval_summary(
    engine: Engine, run: RunState, step_id: str
) -> dict[str, Any]:
    """What runs after an approval step, with which inputs and params (masked)."""
    context = engine._template_context(run, await engine._ticket(run.ticket_id))
    shown: list[dict[str, Any]] = []
    for step in run.runbook.steps[run.runbook.step_index(step_id) + 1 :]:
        if step.only_on_failure:
            continue
        try:
            action = engine.registry.get(step.action)
            inputs = shown_with_values(
                engine.renderer.render(
                    step.with_, context, command_fields=action.command_fields
                )
            )
        except Exception:
            # Inputs that read outputs of steps not run yet are shown unrendered.
            inputs = step.with_
        entry: dict[str, Any] = {
            "id": step.id,
            "action": step.action,
            "with": mask_tree(inputs, run.masker.mask),
        }
        if step.when is not None:
            entry["when"] = run.masker.mask(step.when)
        shown.append(entry)
        if len(shown) >= _NEXT_SHOWN:
            break
    secret = run.runbook.secret_params
    params = {
        k: ("******" if k in secret else mask_tree(v, run.masker.mask))
        for k, v in sorted(run.params.items())
    }
    return {"next": shown, "params": params}


async def _await_decision(engine: Engine, run: RunState, step_id: str) -> Approval:
    while True:
        run.approval_wakeup.clear()
        approval = await engine.store.call(
            engine.store.get_approval, run.execution_id, step_id
        )
        assert approval is not None
        if approval.status != "waiting":
            return approval
        now = engine.clock()
        if approval.timed_out_at(now):
            if await _escalate(engine, run, approval, now):
                continue
            settled = await _time_out(engine, run, approval)
            if settled is None:
                continue  # decided an instant before the deadline: read it again
            return settled
        if reminder_due(approval, now):
            await _remind(engine, run, approval)
        # Decisions from this process set the event; others reach us by polling.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await run.approval_wakeup.wait()


async def _time_out(
    engine: Engine, run: RunState, approval: Approval
) -> Approval | None:
    deadline = approval.deadline
    assert deadline is not None
    try:
        settled = await engine.store.call(
            engine.store.decide_approval,
            run.execution_id,
            approval.step_id,
            actor="haloterm",
            decision="timed_out",
            comment=(
                f"no decision by {deadline:%Y-%m-%d %H:%M:%SZ}"
                f" (on timeout: {approval.on_timeout})"
            ),
            roles=set(),
            origin=engine.origin,
        )
    except ApprovalRefused:
        return None
    engine.bus.publish(ApprovalChanged(run.execution_id, approval.step_id, "timed_out"))
    engine._info(
        run,
        approval.step_id,
        f"approval timed out at {deadline:%Y-%m-%d %H:%M:%SZ};"
        f" on timeout: {approval.on_timeout}",
    )
    return settled


async def _escalate(
    engine: Engine, run: RunState, approval: Approval, now: datetime
) -> bool:
    if (
        approval.on_timeout != "escalate"
        or approval.escalated
        or not approval.escalate_to
    ):
        return False
    period = approval.timeout_seconds
    if period is None and approval.deadline is not None:
        period = (approval.deadline - approval.requested_at).total_seconds()
    deadline = now + timedelta(seconds=period or 0)
    escalated = await engine.store.call(
        engine.store.escalate_approval,
        run.execution_id,
        approval.step_id,
        approvers=approval.escalate_to,
        deadline=deadline,
        actor="haloterm",
    )
    if escalated is None:
        return True  # changed under us: read it again
    who = ", ".join(approval.escalate_to)
    text = (
        f"Run #{run.execution_id} ({run.runbook.name}): approval of step "
        f"{approval.step_id} escalated to {who}; new deadline "
        f"{deadline:%Y-%m-%d %H:%M:%SZ}"
    )
    engine._info(run, approval.step_id, text)
    engine.bus.publish(Notice(text=text, severity="warning", title="Escalated"))
    engine.bus.publish(ApprovalChanged(run.execution_id, approval.step_id, "waiting"))
    return True


async def _remind(engine: Engine, run: RunState, approval: Approval) -> None:
    deadline = approval.deadline
    assert deadline is not None
    who = ", ".join(approval.approvers)
    text = (
        f"Reminder: run #{run.execution_id} ({run.runbook.name}) waits for "
        f"{who} to approve step {approval.step_id}; it times out at "
        f"{deadline:%Y-%m-%d %H:%M:%SZ} (then: {approval.on_timeout})"
    )
    sent = await engine.store.call(
        engine.store.remind_approval,
        run.execution_id,
        approval.step_id,
        actor="haloterm",
        note=text,
    )
    if sent:
        engine._info(run, approval.step_id, text)
        engine.bus.publish(Notice(text=text, severity="warning", title="Approval"))


def reminder_due(approval: Approval, now: datetime) -> bool:
    if approval.deadline is None or approval.reminded_at is not None:
        return False
    period = approval.timeout_seconds
    if period is None:
        period = (approval.deadline - approval.requested_at).total_seconds()
    start = approval.deadline - timedelta(seconds=period)
    return now >= start + timedelta(seconds=period * REMINDER_AT)


def needs_process(approval: Approval, now: datetime) -> bool:
    """Whether a waiting run's approval needs a process to act on it now."""
    return (
        approval.status != "waiting"
        or approval.timed_out_at(now)
        or reminder_due(approval, now)
    )


async def _requested_by(engine: Engine, run: RunState) -> str:
    """Who asks: the run's operator; for a run a rule fired, whoever made the
    ticket event it fired on (so they may not approve what they set off)."""
    if run.trigger.startswith("rule:"):
        firing = run.trigger.removeprefix("rule:")
        if firing.isdigit():
            actor = await engine.store.call(engine.store.firing_actor, int(firing))
            if actor:
                return actor
    return run.operator
