"""Approval steps in the engine: waiting, decisions, refusals and timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from haloterm.config import Operator, os_user
from haloterm.engine.events import Notice
from haloterm.models import ExecutionStatus, StepStatus
from haloterm.services import Services
from haloterm.storage import ApprovalRefused, Store
from haloterm.storage.approvals import params_hash
from haloterm.storage.records import Decision
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
    # Each refused attempt is on the record: who, what, why.
    audit = svc.store.list_audit(target_type="execution", target_id=execution_id)
    refused = [r for r in audit if r.action == "approval.refused"]
    assert sorted(r.actor for r in refused) == ["alice", "bob"]
    assert all(r.detail["step"] == "approve" for r in refused)
    (by_bob,) = [r for r in refused if r.actor == "bob"]
    assert by_bob.detail["reason"] == "bob started this run and may not approve it"
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


# ------------------------------------------------------------ operators and quorum

SUMMARY = """
name: summary
params:
  host: {type: string, default: web-01}
  token: {type: secret, required: true}
steps:
  - id: approve
    action: approval
    with: {approvers: [carol, "role:lead"], message: "Restart {{ params.host }}?"}
  - id: restart
    action: shell
    with: {command: "echo restarting {{ params.host }} with {{ params.token }}"}
  - id: report
    action: shell
    when: "{{ steps.restart.status == 'passed' }}"
    with: {command: "echo {{ steps.restart.output }}"}
"""


async def test_the_approver_is_shown_what_runs_next_with_secrets_masked(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(SUMMARY)
    execution_id = await svc.engine.start(
        "summary", {"token": "hunter2-secret"}, operator="alice"
    )
    await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    (pending,) = svc.store.pending_approvals()
    nxt = pending.summary["next"]
    assert [(n["id"], n["action"]) for n in nxt] == [
        ("restart", "shell"),
        ("report", "shell"),
    ]
    assert "web-01" in nxt[0]["with"]["command"]
    assert pending.summary["params"] == {"host": "web-01", "token": "******"}
    assert "hunter2-secret" not in json.dumps(pending.model_dump(mode="json"))
    assert pending.params_hash == params_hash(pending.summary)

    await svc.engine.decide(execution_id, "approve", actor="carol", decision="approved")
    assert await svc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED
    audit = svc.store.list_audit(target_type="execution", target_id=execution_id)
    decided = next(r for r in audit if r.action == "approval.approved")
    assert decided.actor == "carol"
    assert decided.detail["params_hash"] == pending.params_hash
    assert decided.origin and str(os.getpid()) in decided.origin
    # carol is who decided; the OS account acting as her is named too.
    assert f"account {os_user()}" in decided.origin
    requested = next(r for r in audit if r.action == "approval.request")
    assert requested.detail["params_hash"] == pending.params_hash
    assert "hunter2-secret" not in json.dumps([r.detail for r in audit])


QUORUM = """
name: quorum
steps:
  - id: approve
    action: approval
    with:
      approvers: ["role:lead", dave]
      min_approvals: 2
      allow_self_approval: true
  - {id: act, action: shell, with: {command: "echo go"}}
"""


async def test_a_quorum_needs_different_approvers_and_self_approval_when_allowed(
    tmp_path: Path,
) -> None:
    settings = make_settings()
    settings.operators["dave"] = Operator(roles=["lead"])
    svc = Services.open(tmp_path / "q.db", settings=settings, seed=False)
    await svc.start()
    try:
        path = tmp_path / "quorum.yaml"
        path.write_text(QUORUM, encoding="utf-8")
        svc.import_runbook(path)
        execution_id = await svc.engine.start("quorum", {}, operator="bob")
        await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
        # The starter may approve: the step allows it. One answer is not enough.
        first = await svc.engine.decide(
            execution_id, "approve", actor="bob", decision="approved"
        )
        assert first.status == "waiting"
        with pytest.raises(ApprovalRefused, match="already answered"):
            await svc.engine.decide(
                execution_id, "approve", actor="bob", decision="approved"
            )
        with pytest.raises(ApprovalRefused, match="not an approver"):
            await svc.engine.decide(
                execution_id, "approve", actor="alice", decision="approved"
            )
        second = await svc.engine.decide(
            execution_id, "approve", actor="dave", decision="approved"
        )
        assert second.status == "approved"
        assert await svc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED
        act = {r.step_id: r for r in svc.store.step_runs(execution_id)}["approve"]
        assert sorted(act.outputs["decided_by"]) == ["bob", "dave"]
    finally:
        await svc.stop()


async def test_two_decisions_at_once_from_two_consoles_exactly_one_wins(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(APPROVAL)
    settings = make_settings()
    settings.operators["erin"] = Operator(roles=["lead"])
    svc.engine.settings = settings
    execution_id = await svc.engine.start("gated", {}, operator="alice")
    await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    other = Services.open(svc.store.path, settings=settings, seed=False)
    try:
        barrier = threading.Barrier(2)

        def click(store: Store, actor: str, decision: Decision) -> object:
            barrier.wait()
            try:
                return store.decide_approval(
                    execution_id,
                    "approve",
                    actor=actor,
                    decision=decision,
                    comment="now",
                    roles={"lead"},
                )
            except ApprovalRefused as exc:
                return exc

        results = await asyncio.gather(
            asyncio.to_thread(click, svc.store, "bob", "approved"),
            asyncio.to_thread(click, other.store, "erin", "rejected"),
        )
    finally:
        other.store.close()
    refused = [r for r in results if isinstance(r, ApprovalRefused)]
    assert len(refused) == 1
    winner = svc.store.get_approval(execution_id, "approve")
    assert winner is not None and winner.decided_by in ("bob", "erin")
    assert refused[0].decided_by == winner.decided_by
    assert f"by {winner.decided_by}" in refused[0].reason
    await asyncio.wait_for(svc.engine.wait(execution_id), 10)


async def test_a_rejection_without_a_comment_is_refused(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(APPROVAL)
    execution_id = await svc.engine.start("gated", {}, operator="alice")
    await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    with pytest.raises(ValueError, match="comment"):
        await svc.engine.decide(
            execution_id, "approve", actor="bob", decision="rejected", comment=" "
        )
    await svc.engine.cancel(execution_id, actor="alice")


# ------------------------------------------------------------ clocks and restarts

TIMED = """
name: timed
steps:
  - id: approve
    action: approval
    with:
      approvers: ["role:lead"]
      timeout: 100s
      on_timeout: ON_TIMEOUT
      escalate_to: [erin]
    on_failure: {goto: declined}
  - {id: act, action: shell, with: {command: "echo acting"}}
  - id: declined
    action: shell
    only_on_failure: true
    with: {command: "echo declined"}
"""


class Clock:
    """A settable UTC clock shared by two services, like two consoles."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _open(tmp_path: Path, clock: Clock) -> Services:
    settings = make_settings()
    settings.operators["erin"] = Operator(roles=[])
    return Services.open(tmp_path / "t.db", settings=settings, seed=False, clock=clock)


async def _timed(tmp_path: Path, clock: Clock, on_timeout: str) -> tuple[Services, int]:
    svc = _open(tmp_path, clock)
    await svc.start()
    path = tmp_path / "timed.yaml"
    path.write_text(TIMED.replace("ON_TIMEOUT", on_timeout), encoding="utf-8")
    svc.import_runbook(path)
    execution_id = await svc.engine.start("timed", {}, operator="alice")
    await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    return svc, execution_id


async def _until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {seconds}s")


async def test_a_reminder_goes_out_at_80_percent_of_the_timeout(
    tmp_path: Path,
) -> None:
    clock = Clock()
    svc, execution_id = await _timed(tmp_path, clock, "reject")
    notices: list[Notice] = []
    svc.engine.bus.subscribe(
        lambda e: notices.append(e) if isinstance(e, Notice) else None
    )
    try:
        clock.advance(79)
        await asyncio.sleep(0.7)
        assert notices == []
        clock.advance(2)
        await _until(lambda: bool(notices))
        assert "Reminder" in notices[0].text and "role:lead" in notices[0].text
        audit = svc.store.list_audit(target_type="execution", target_id=execution_id)
        assert [r.action for r in audit].count("approval.remind") == 1
        await asyncio.sleep(0.7)
        assert len(notices) == 1
    finally:
        await svc.stop()


async def test_escalation_hands_the_approval_on_for_another_period(
    tmp_path: Path,
) -> None:
    clock = Clock()
    svc, execution_id = await _timed(tmp_path, clock, "escalate")
    try:
        clock.advance(101)
        await _until(
            lambda: (
                "erin" in svc.store.pending_approvals()[0].approvers
                if svc.store.pending_approvals()
                else False
            )
        )
        (pending,) = svc.store.pending_approvals()
        assert pending.approvers == ["role:lead", "erin"]
        assert pending.deadline == clock.now + timedelta(seconds=100)
        audit = svc.store.list_audit(target_type="execution", target_id=execution_id)
        assert "approval.escalate" in [r.action for r in audit]

        clock.advance(101)
        status = await asyncio.wait_for(svc.engine.wait(execution_id), 10)
        assert status is ExecutionStatus.SUCCEEDED  # the goto branch ran
        runs = {r.step_id: r for r in svc.store.step_runs(execution_id)}
        assert runs["approve"].reason == "timeout (no decision)"
        assert runs["declined"].status is StepStatus.PASSED
    finally:
        await svc.stop()


async def test_on_timeout_approve_lets_the_run_go_on(tmp_path: Path) -> None:
    clock = Clock()
    svc, execution_id = await _timed(tmp_path, clock, "approve")
    try:
        clock.advance(101)
        assert await asyncio.wait_for(svc.engine.wait(execution_id), 10) is (
            ExecutionStatus.SUCCEEDED
        )
        runs = {r.step_id: r for r in svc.store.step_runs(execution_id)}
        assert runs["approve"].status is StepStatus.PASSED
        assert runs["act"].status is StepStatus.PASSED
    finally:
        await svc.stop()


async def test_after_a_restart_the_wait_keeps_its_deadline_and_a_decision_continues(
    tmp_path: Path,
) -> None:
    """C22: restart the owning console at t=30 s, approve from another at t=45 s."""
    clock = Clock()
    svc, execution_id = await _timed(tmp_path, clock, "reject")
    (before,) = svc.store.pending_approvals()
    clock.advance(30)
    await svc.stop()

    waiting = _open(tmp_path, clock)
    await waiting.start()
    try:
        execution = waiting.store.get_execution(execution_id)
        assert execution is not None
        assert execution.status is ExecutionStatus.WAITING  # no process needed
        assert await waiting.engine.adopt_decided_approvals() == []
        (after,) = waiting.store.pending_approvals(offered_at=clock.now)
        assert after.deadline == before.deadline

        clock.advance(15)
        await waiting.engine.decide(
            execution_id, "approve", actor="bob", decision="approved", comment="ok"
        )
        status = await asyncio.wait_for(waiting.engine.wait(execution_id), 10)
        assert status is ExecutionStatus.SUCCEEDED
        runs = {r.step_id: r for r in waiting.store.step_runs(execution_id)}
        assert runs["approve"].status is StepStatus.PASSED
        assert runs["act"].status is StepStatus.PASSED
    finally:
        await waiting.stop()


async def test_the_lease_holder_times_out_a_wait_nobody_holds(tmp_path: Path) -> None:
    clock = Clock()
    svc, execution_id = await _timed(tmp_path, clock, "reject")
    await svc.stop()
    clock.advance(101)

    holder = _open(tmp_path, clock)
    await holder.start()
    try:
        assert holder.store.pending_approvals(offered_at=clock.now) == []
        with pytest.raises(ApprovalRefused, match="timed out"):
            await holder.engine.decide(
                execution_id, "approve", actor="bob", decision="approved"
            )
        assert await holder.engine.adopt_decided_approvals() == [execution_id]
        assert await holder.engine.adopt_decided_approvals() == []
        status = await asyncio.wait_for(holder.engine.wait(execution_id), 10)
        assert status is ExecutionStatus.SUCCEEDED
        runs = {r.step_id: r for r in holder.store.step_runs(execution_id)}
        assert runs["approve"].reason == "timeout (no decision)"
        assert runs["declined"].status is StepStatus.PASSED
        audit = holder.store.list_audit(target_type="execution", target_id=execution_id)
        assert "approval.timed_out" in [r.action for r in audit]
    finally:
        await holder.stop()


async def test_a_decision_in_another_console_reaches_the_owner_within_a_second(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(APPROVAL)
    execution_id = await svc.engine.start("gated", {}, operator="alice")
    await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    other = Services.open(svc.store.path, settings=make_settings(), seed=False)
    await other.start()
    try:
        await other.engine.decide(
            execution_id, "approve", actor="bob", decision="approved"
        )
        decided = time.monotonic()
        # The owner is alive: the deciding console leaves the run to it.
        assert other.engine.active == []
        await svc.engine.wait_until(execution_id, {ExecutionStatus.RUNNING})
        assert time.monotonic() - decided < 1.0
        assert await svc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED
    finally:
        await other.stop()
