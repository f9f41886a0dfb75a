"""Approval steps in the engine: waiting, decisions, refusals and timeouts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from haloterm.models import ExecutionStatus, StepStatus
from haloterm.services import Services
from haloterm.storage import ApprovalRefused
from tests.engine.conftest import AddRunbook, make_settings

APPROVAL = """
name: gated
steps:
  - id: approve
    action: approval
    with:
      approvers: ["role:lead"]
      message: "Restart {{ execution.operator }}'s thing?"
      timeout: 60s
    on_failure: {goto: declined}
  - id: act
    action: shell
    with: {command: "echo acting"}
  - id: declined
    action: shell
    only_on_failure: true
    with: {command: "echo declined"}
"""


async def test_an_approved_step_passes_and_the_run_goes_on(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(APPROVAL)
    execution_id = await svc.engine.start("gated", {}, operator="alice")
    status = await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    assert status is ExecutionStatus.WAITING
    (pending,) = svc.store.pending_approvals()
    assert pending.message == "Restart alice's thing?"

    await svc.engine.decide(
        execution_id, "approve", actor="bob", decision="approved", comment="go"
    )
    assert await svc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED
    runs = {r.step_id: r for r in svc.store.step_runs(execution_id)}
    assert runs["approve"].status is StepStatus.PASSED
    assert runs["act"].status is StepStatus.PASSED
    assert runs["declined"].status is StepStatus.SKIPPED


async def test_self_approval_and_non_approvers_are_refused(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(APPROVAL)
    execution_id = await svc.engine.start("gated", {}, operator="bob")
    await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    with pytest.raises(ApprovalRefused):
        await svc.engine.decide(
            execution_id, "approve", actor="bob", decision="approved"
        )
    with pytest.raises(ApprovalRefused):
        await svc.engine.decide(
            execution_id, "approve", actor="alice", decision="approved"
        )
    await svc.engine.cancel(execution_id, actor="bob")


async def test_a_rejection_takes_the_failure_branch(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(APPROVAL)
    execution_id = await svc.engine.start("gated", {}, operator="alice")
    await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    await svc.engine.decide(
        execution_id, "approve", actor="bob", decision="rejected", comment="not now"
    )
    await svc.engine.wait(execution_id)
    runs = {r.step_id: r for r in svc.store.step_runs(execution_id)}
    assert runs["approve"].status is StepStatus.FAILED
    assert runs["approve"].reason == "rejected by bob: not now"
    assert runs["act"].status is StepStatus.SKIPPED
    assert runs["declined"].status is StepStatus.PASSED


async def test_timeout_uses_the_injected_clock(tmp_path: Path) -> None:
    now = [datetime(2026, 1, 5, 12, 0, tzinfo=UTC)]
    svc = Services.open(
        tmp_path / "s.db", settings=make_settings(), seed=False, clock=lambda: now[0]
    )
    await svc.start()
    try:
        path = tmp_path / "gated.yaml"
        path.write_text(APPROVAL, encoding="utf-8")
        svc.import_runbook(path)
        execution_id = await svc.engine.start("gated", {}, operator="alice")
        await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
        (pending,) = svc.store.pending_approvals()
        assert pending.deadline == now[0] + timedelta(seconds=60)

        now[0] += timedelta(seconds=61)
        assert await asyncio.wait_for(svc.engine.wait(execution_id), 10) is (
            ExecutionStatus.SUCCEEDED
        )
        runs = {r.step_id: r for r in svc.store.step_runs(execution_id)}
        assert runs["approve"].status is StepStatus.FAILED
        assert runs["approve"].reason == "timeout (no decision)"
        assert runs["declined"].status is StepStatus.PASSED
        with pytest.raises(ApprovalRefused):
            await svc.engine.decide(
                execution_id, "approve", actor="bob", decision="approved"
            )
    finally:
        await svc.stop()


async def test_a_decision_from_another_process_reaches_the_waiting_run(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(APPROVAL)
    execution_id = await svc.engine.start("gated", {}, operator="alice")
    await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    other = Services.open(svc.store.path, settings=make_settings(), seed=False)
    try:
        other.store.decide_approval(
            execution_id, "approve", actor="bob", decision="approved", roles={"lead"}
        )
    finally:
        other.store.close()
    status = await asyncio.wait_for(svc.engine.wait(execution_id), 5)
    assert status is ExecutionStatus.SUCCEEDED
