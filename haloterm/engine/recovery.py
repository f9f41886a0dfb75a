"""Taking over runs no process holds: decided or overdue approvals, idempotent steps.

These are what the automation lease holder calls periodically, and what a console
calls after it decided an approval whose run has no live owner.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from haloterm.engine.approvals import needs_process
from haloterm.engine.runner import OWNER_TTL, ClaimLost, StartError
from haloterm.models import ExecutionStatus

if TYPE_CHECKING:
    from haloterm.engine.runner import Engine

logger = logging.getLogger(__name__)

MAX_AUTO_RESUMES = 3
"""Automatic resumes of one interrupted idempotent step before an operator decides."""

AUTO_ACTOR = "haloterm (automatic)"


async def continue_decided(engine: Engine, execution_id: int, *, actor: str) -> bool:
    """Continue a waiting run whose owner is gone, in this process.

    Returns:
        True when this process took the run over; False when it runs here
        already, is not waiting, or a live process waits on it.

    Raises:
        StartError: it cannot continue (its secret params are not available
            here, its runbook version is gone).
    """
    if execution_id in engine.active:
        return False
    execution = await engine.store.call(engine.store.get_execution, execution_id)
    if execution is None or execution.status is not ExecutionStatus.WAITING:
        return False
    live = await engine.store.call(engine.store.live_owner_ids, OWNER_TTL)
    if execution.owner_id in live and execution.owner_id != engine.owner_id:
        return False
    try:
        await engine.adopt(execution_id, actor=actor, statuses=("waiting",))
    except ClaimLost:
        return False
    return True


async def adopt_decided_approvals(engine: Engine) -> list[int]:
    """Continue waiting runs no process waits on that need a process now.

    That is a run whose approval was decided while nobody waited, is past its
    deadline (its ``on_timeout`` must run) or is due a reminder. The automation
    lease holder calls this periodically, so decisions, timeouts and
    escalations happen even when the console that started a run is closed.

    Returns:
        The ids of the executions taken over.
    """
    taken: list[int] = []
    now = engine.clock()
    for execution in await engine.store.call(engine.store.ownerless_waiting, OWNER_TTL):
        step_id = execution.current_step
        if step_id is None or execution.id in engine.active:
            continue
        approval = await engine.store.call(
            engine.store.get_approval, execution.id, step_id
        )
        if approval is not None and not needs_process(approval, now):
            continue
        try:
            await engine.adopt(execution.id, actor=AUTO_ACTOR, statuses=("waiting",))
        except ClaimLost:
            continue
        except StartError as exc:
            logger.warning("waiting execution %s not continued: %s", execution.id, exc)
            continue
        taken.append(execution.id)
    return taken


async def resume_idempotent_interrupted(engine: Engine) -> list[int]:
    """Resume interrupted runs whose interrupted step is marked ``idempotent``.

    Each run is resumed automatically at most :data:`MAX_AUTO_RESUMES` times;
    after that (and for every step not marked idempotent) an operator decides.
    The automation lease holder calls this periodically.

    Returns:
        The ids of the executions resumed.
    """
    resumed: list[int] = []
    for execution in await engine.store.call(engine.store.interrupted_executions):
        if execution.current_step is None or execution.id in engine.active:
            continue
        stored = await engine.store.call(
            engine.store.get_runbook, execution.runbook, execution.version
        )
        if stored is None:
            continue
        try:
            step = stored.runbook.steps[
                stored.runbook.step_index(execution.current_step)
            ]
        except KeyError:
            continue
        if not step.idempotent:
            continue
        if await _auto_resumes(engine, execution.id) >= MAX_AUTO_RESUMES:
            continue
        try:
            await engine.adopt(
                execution.id, actor=AUTO_ACTOR, statuses=("interrupted",)
            )
        except ClaimLost:
            continue
        except StartError as exc:
            logger.warning(
                "interrupted execution %s not resumed: %s", execution.id, exc
            )
            continue
        logger.info("execution %s resumed at idempotent step %s", execution.id, step.id)
        resumed.append(execution.id)
    return resumed


async def _auto_resumes(engine: Engine, execution_id: int) -> int:
    records = await engine.store.call(
        engine.store.list_audit, target_type="execution", target_id=execution_id
    )
    return sum(
        1 for r in records if r.action == "execution.resume" and r.actor == AUTO_ACTOR
    )
