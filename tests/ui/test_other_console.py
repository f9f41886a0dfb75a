"""What another process does on the same store reaches this console without events:
a run it owns (steps, output, its approval), its ticket edits, its approvals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from haloterm.app import create_app
from haloterm.screens.approvals import ApprovalsScreen
from haloterm.screens.dialogs import CommentScreen
from haloterm.screens.history import HistoryScreen
from haloterm.screens.run import RunScreen
from haloterm.screens.ticket import TicketScreen
from haloterm.services import Services
from haloterm.widgets.log_view import LogView
from tests.ui.conftest import wait_for
from tests.ui.test_run_screen import add_runbook, label

ELSEWHERE = """
name: elsewhere
steps:
  - id: talk
    action: shell
    with: {command: "echo from-bob-1; echo from-bob-2"}
  - id: gate
    action: approval
    with: {approvers: ["alice"], message: "Carry on?"}
  - id: after
    action: shell
    with: {command: "echo after-the-gate"}
"""


@pytest.fixture
async def bob(
    services: Services, open_services: Callable[..., Services], tmp_path: Path
) -> AsyncIterator[Services]:
    """Another console on the same store, as bob, with ``elsewhere`` to run."""
    add_runbook(services, tmp_path, ELSEWHERE)
    other = open_services("bob")
    await other.start()
    yield other
    await other.stop()


async def test_a_run_owned_by_another_console_is_followed_live(
    services: Services, bob: Services
) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        execution_id = await bob.engine.start("elsewhere", {}, operator="bob")
        await app.push_screen(RunScreen(execution_id))
        screen = app.screen
        assert isinstance(screen, RunScreen)
        assert execution_id not in services.engine.active
        await wait_for(
            pilot, lambda: "waiting" in label(screen, "gate"), what="gate waits"
        )
        await pilot.press("l")  # every step's output
        view = screen.query_one(LogView)
        await wait_for(
            pilot,
            lambda: "from-bob-2" in view.plain_lines(),
            what="bob's output",
        )
        assert label(screen, "talk").startswith("✔ passed")
        assert app.waiting_approvals == 1
        # alice decides here; bob's process, which owns the run, carries on.
        await pilot.press("y")  # the cursor followed the run to the gate
        assert isinstance(app.screen, CommentScreen)
        await pilot.press(*"fine", "enter")
        await wait_for(
            pilot,
            lambda: label(screen, "after").startswith("✔ passed"),
            what="the step after the gate",
        )
        await wait_for(
            pilot,
            lambda: "after-the-gate" in view.plain_lines(),
            what="output after the gate",
        )
        assert execution_id not in services.engine.active
        shown = view.plain_lines()
        assert shown.count("from-bob-1") == 1
        assert app.waiting_approvals == 0


async def test_another_consoles_ticket_edit_and_approval_show_up(
    services: Services, bob: Services
) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, TicketScreen))
        ticket = app.screen
        assert isinstance(ticket, TicketScreen)
        await wait_for(pilot, lambda: ticket.view is not None)
        bob.store.update_ticket(ticket.ticket_id, actor="bob", status="resolved")
        await wait_for(
            pilot,
            lambda: ticket.view is not None and ticket.view.ticket.status == "resolved",
            what="bob's status change",
        )
        await pilot.press("a")
        queue = app.screen
        assert isinstance(queue, ApprovalsScreen)
        assert queue.waiting == []
        await bob.engine.start("elsewhere", {}, operator="bob")
        await wait_for(pilot, lambda: len(queue.waiting) == 1, what="bob's approval")


async def test_history_shows_another_consoles_runs_start_and_end(
    services: Services, bob: Services
) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("h")
        history = app.screen
        assert isinstance(history, HistoryScreen)
        await wait_for(pilot, lambda: history.runs == [])
        execution_id = await bob.engine.start("elsewhere", {}, operator="bob")
        await wait_for(
            pilot,
            lambda: [r.status.value for r in history.runs] == ["waiting"],
            what="bob's run, waiting",
        )
        await bob.engine.cancel(execution_id, actor="bob")
        await wait_for(
            pilot,
            lambda: [r.status.value for r in history.runs] == ["cancelled"],
            what="bob's run, cancelled",
        )
