"""From a P1 ticket to an approved, audited run, by keyboard, across two consoles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from haloterm.app import create_app
from haloterm.models import ExecutionStatus
from haloterm.screens.approvals import ApprovalsScreen
from haloterm.screens.run_form import RunForm
from haloterm.screens.ticket import TicketScreen
from haloterm.services import Services
from tests.ui.conftest import wait_for

TRIAGE = """\
name: checkout-triage
title: Triage checkout errors
tags: [web]
params:
  host: {type: string, required: true}
triggers:
  - manual: true
  - on: ticket.created
    match: {priority: P1, category: web}
    params: {host: "{{ ticket.fields.instance_host }}"}
steps:
  - id: look
    action: shell
    with: {command: "echo looking at {{ params.host }}"}
  - id: approve
    action: approval
    with: {approvers: ["role:lead"], message: "Restart checkout on {{ params.host }}?"}
  - id: fix
    action: shell
    with: {command: "echo restarted {{ params.host }}"}
  - id: close
    action: ticket
    with: {status: resolved, note: "Fixed by {{ runbook.name }}"}
"""


async def test_p1_to_approved_run_in_few_keys(
    services: Services,
    open_services: Callable[..., Services],
    tmp_path: Path,
) -> None:
    path = tmp_path / "triage.yaml"
    path.write_text(TRIAGE)
    services.import_runbook(path)
    alice = create_app(services)
    async with alice.run_test(size=(100, 30)) as pilot:
        keys = ["p", "r", "enter"]
        await pilot.press(keys[0])
        await wait_for(pilot, lambda: isinstance(alice.screen, TicketScreen))
        ticket_screen = alice.screen
        assert isinstance(ticket_screen, TicketScreen)
        await wait_for(pilot, lambda: ticket_screen.view is not None)
        selected = ticket_screen.selected_suggestion
        assert selected is not None and selected.name == "checkout-triage"
        await pilot.press(keys[1])
        await wait_for(pilot, lambda: isinstance(alice.screen, RunForm))
        form = alice.screen
        assert isinstance(form, RunForm)
        await wait_for(pilot, lambda: bool(form.query("#param-0")))
        await pilot.press(keys[2])
        await wait_for(pilot, lambda: bool(services.engine.active), what="run started")
        assert len(keys) <= 4
        execution_id = services.engine.active[0]
        run = services.store.get_execution(execution_id)
        assert run is not None and run.params == {"host": "app-03.example.internal"}
        assert run.ticket_id == ticket_screen.ticket_id
        await wait_for(
            pilot,
            lambda: services.store.get_approval(execution_id, "approve") is not None,
            what="approval asked",
        )

        # bob, a lead, approves from his own console on the same store.
        bob_services = open_services("bob")
        bob = create_app(bob_services)
        async with bob.run_test(size=(100, 30)) as bob_pilot:
            await bob_pilot.press("a")
            queue = bob.screen
            assert isinstance(queue, ApprovalsScreen)
            await wait_for(bob_pilot, lambda: len(queue.waiting) == 1)
            await bob_pilot.press("y", *"go ahead", "enter")
            await wait_for(bob_pilot, lambda: not queue.waiting, what="decided")

        await wait_for(
            pilot,
            lambda: (
                (e := services.store.get_execution(execution_id)) is not None
                and e.status is ExecutionStatus.SUCCEEDED
            ),
            what="run succeeded",
        )
        ticket = services.store.get_ticket(ticket_screen.ticket_id)
        assert ticket is not None and ticket.status == "resolved"
        audit = services.store.list_audit(limit=200)
        by_bob = [a for a in audit if a.actor == "bob"]
        assert any("go ahead" in str(a.detail) for a in by_bob)
        mine = [a for a in audit if a.target_id == str(execution_id)]
        assert any(a.actor == "alice" for a in mine)
