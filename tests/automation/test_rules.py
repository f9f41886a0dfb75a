"""Ticket-event rules: each event handled once, storms suppressed and shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from haloterm.automation.clock import ManualClock
from haloterm.automation.service import Automation
from haloterm.models import ExecutionStatus
from haloterm.services import Services
from haloterm.storage import ApprovalRefused
from haloterm.storage.seed import seed_if_empty
from tests.automation.conftest import AddRunbook

RULE = """
name: on-web
params:
  host: {type: string, required: true}
triggers:
  - on: ticket.created
    match: {type: incident, priority: [P1, P2], category: web}
    params: {host: "{{ ticket.fields.host }}"}
    dedupe: "{{ ticket.fields.service }}"
    cooldown: 10m
steps:
  - id: s
    action: shell
    with: {command: "echo {{ params.host }}"}
"""


def _web(svc: Services, title: str, **fields: str) -> int:
    return svc.store.create_ticket(
        title=title,
        priority="P1",
        category="web",
        fields={"host": "app-1", "service": "api", **fields},
        actor="alice",
    )


async def _settle(svc: Services) -> list[int]:
    runs = svc.store.list_executions(limit=1000)
    for execution in runs:
        await svc.engine.wait(execution.id)
    return sorted(e.id for e in runs)


async def test_a_created_ticket_fires_its_rule_once(
    svc: Services, auto: Automation, add_runbook: AddRunbook
) -> None:
    add_runbook(RULE)
    ticket_id = _web(svc, "x; rm -rf / [bold]")
    await auto.step(force=True)
    await auto.step(force=True)
    (execution_id,) = await _settle(svc)
    execution = svc.store.get_execution(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert execution.ticket_id == ticket_id and execution.params == {"host": "app-1"}
    assert execution.operator == "automation"
    (firing,) = svc.store.rule_firings(ticket_id=ticket_id)
    assert firing.status == "started" and firing.execution_id == execution_id
    kinds = [e.kind for e in svc.store.ticket_history(ticket_id)]
    assert kinds == ["created", "rule_fired"]


async def test_a_storm_is_suppressed_by_dedupe_and_cooldown(
    svc: Services, auto: Automation, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    add_runbook(RULE)
    tickets = [_web(svc, f"storm {i}") for i in range(5)]
    await auto.step(force=True)
    assert len(await _settle(svc)) == 1
    statuses = [f.status for f in reversed(svc.store.rule_firings())]
    assert statuses == ["started"] + ["suppressed"] * 4
    last = svc.store.ticket_history(tickets[-1])
    assert last[-1].kind == "rule_suppressed"
    assert "api" in last[-1].data["reason"]
    assert (
        len([a for a in svc.store.list_audit() if a.action == "rule.suppressed"]) == 4
    )

    clock.advance(11 * 60)
    _web(svc, "after the cooldown")
    await auto.step(force=True)
    assert len(await _settle(svc)) == 2


async def test_only_matching_tickets_and_kinds_fire(
    svc: Services, auto: Automation, add_runbook: AddRunbook
) -> None:
    add_runbook(RULE)
    quiet = svc.store.create_ticket(
        title="db", priority="P1", category="db", actor="alice"
    )
    svc.store.update_ticket(quiet, status="acknowledged", actor="alice")
    await auto.step(force=True)
    assert await _settle(svc) == []
    assert svc.store.rule_firings() == []
    assert svc.store.event_cursor() == svc.store.ticket_history(quiet)[-1].id


async def test_a_rule_that_cannot_start_is_recorded_failed(
    svc: Services, auto: Automation, add_runbook: AddRunbook
) -> None:
    add_runbook(RULE)
    svc.store.create_ticket(
        title="no host",
        priority="P1",
        category="web",
        fields={"service": "api"},
        actor="a",
    )
    await auto.step(force=True)
    (firing,) = svc.store.rule_firings()
    assert firing.status == "failed"
    assert firing.reason is not None and "host" in firing.reason


async def test_events_wait_for_a_holder_and_are_handled_once(
    svc: Services, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    """Two automations on one store: only the holder fires; a takeover goes on
    from the cursor."""
    add_runbook(RULE)
    _web(svc, "one", service="a")
    first = Automation(
        svc.store, svc.engine, holder="one", user="a", clock=clock, use_thread=False
    )
    second = Automation(
        svc.store, svc.engine, holder="two", user="b", clock=clock, use_thread=False
    )
    await first.step(force=True)
    await second.step(force=True)
    assert first.holding and not second.holding
    assert "automation runs in another session" in await second.status_line()
    _web(svc, "two", service="b")
    await second.step(force=True)
    assert len(await _settle(svc)) == 1

    await first.stop()
    await second.step(force=True)
    assert second.holding
    assert len(await _settle(svc)) == 2
    assert len(svc.store.rule_firings()) == 2
    await second.stop()


async def test_seeded_demo_tickets_fire_nothing(
    svc: Services, auto: Automation, add_runbook: AddRunbook
) -> None:
    examples = Path(__file__).parents[2] / "haloterm" / "examples"
    svc.store.write(
        lambda conn: conn.execute("DELETE FROM meta WHERE key = 'seeded_at'")
    )
    report = seed_if_empty(svc.store, examples, registry=svc.registry)
    assert report.tickets > 0 and "restart-demo-service" in report.runbooks
    await auto.step(force=True)
    assert svc.store.rule_firings() == []
    assert await _settle(svc) == []
    assert svc.store.event_cursor() > 0


async def test_services_run_automation_when_asked(tmp_path: Path) -> None:
    """A console built with ``start(automation=True)`` holds the lease and fires."""
    from tests.engine.conftest import make_settings

    svc = Services.open(tmp_path / "s.db", settings=make_settings(), seed=False)
    await svc.start(automation=True)
    try:
        assert svc.automation is not None
        await svc.automation.step(force=True)
        assert svc.automation.holding
        assert await svc.automation.status_line() == "automation runs here"
        holder = svc.store.lease_holder()
        assert holder is not None and holder.holder == svc.owner_id
    finally:
        await svc.stop()
    assert svc.automation is None


GATED_RULE = """
name: gated-on-web
triggers:
  - on: ticket.created
    match: {category: web}
steps:
  - id: gate
    action: approval
    with: {approvers: [alice, bob], message: "Restart?"}
"""


async def test_whoever_set_off_a_rule_may_not_approve_its_run(
    svc: Services, auto: Automation, add_runbook: AddRunbook
) -> None:
    """alice's ticket fired the rule: the run is hers to ask for, not to approve."""
    add_runbook(GATED_RULE)
    _web(svc, "api down")
    await auto.step(force=True)
    await auto.step(force=True)
    (execution,) = svc.store.list_executions()
    await svc.engine.wait_until(execution.id, {ExecutionStatus.WAITING})
    approval = svc.store.get_approval(execution.id, "gate")
    assert approval is not None and approval.requested_by == "alice"
    with pytest.raises(ApprovalRefused, match="alice started this run"):
        await svc.engine.decide(
            execution.id, "gate", actor="alice", decision="approved"
        )
    await svc.engine.decide(execution.id, "gate", actor="bob", decision="approved")
    assert await svc.engine.wait(execution.id) is ExecutionStatus.SUCCEEDED
