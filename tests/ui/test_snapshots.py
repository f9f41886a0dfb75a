"""Pictures of the console's screens at 80x24 and 120x40, frozen clock, no blink."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from haloterm.app import create_app
from haloterm.screens.approvals import ApprovalsScreen
from haloterm.screens.run_form import RunForm
from haloterm.screens.ticket import TicketScreen
from haloterm.services import Services
from haloterm.widgets.runbook_list import RunbookList
from tests.ui.conftest import wait_for

SnapCompare = Callable[..., bool]
SIZES = [(80, 24), (120, 40)]


async def _settle(pilot: Pilot[None]) -> None:
    pilot.app.animation_level = "none"
    await wait_for(pilot, lambda: True)
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()


def _c28(services: Services) -> None:
    for title in (
        "[bold]URGENT[/bold]",
        "[/",
        "[link=http://evil.example]click[/link]",
    ):
        services.store.create_ticket(title=title, priority="P1", actor="alice")


@pytest.mark.parametrize("size", SIZES)
def test_main_screen(
    snap_compare: SnapCompare, services: Services, size: tuple[int, int]
) -> None:
    """Main screen: the ticket table (P1 rows bold with ▲, C28 titles shown literally,
    no bold URGENT, no link), the count line "1-9 of 9", and the runbook list with
    last run "never"; the footer shows p, /, s and r (a ticket is selected)."""
    _c28(services)

    async def run_before(pilot: Pilot[None]) -> None:
        runbooks = pilot.app.screen.query_one(RunbookList)
        await wait_for(pilot, lambda: runbooks.row_count > 0)
        await _settle(pilot)

    assert snap_compare(create_app(services), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_ticket_screen(
    snap_compare: SnapCompare, services: Services, size: tuple[int, int]
) -> None:
    """Ticket screen of the seeded P1 alert: head line with ▲ P1, its fields, the
    history (created by the seeder), "★" before restart-demo-service, first in
    the runbook list, and no runs yet."""

    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, TicketScreen))
        screen = pilot.app.screen
        assert isinstance(screen, TicketScreen)
        await wait_for(pilot, lambda: screen.view is not None)
        # The runbook column takes its width from its rows once they are laid out.
        suggested = screen.query_one("#suggested", DataTable)
        await wait_for(pilot, lambda: suggested.virtual_size.width > 20)
        await _settle(pilot)

    assert snap_compare(create_app(services), terminal_size=size, run_before=run_before)


def test_run_form(snap_compare: SnapCompare, services: Services) -> None:
    """Run form for onboard-new-joiner at 80x24: labelled fields with types, the team
    Select on "platform", an empty required full_name field focused."""

    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.app.push_screen(RunForm("onboard-new-joiner"))
        form = pilot.app.screen
        await wait_for(pilot, lambda: bool(form.query("#param-0")))
        await _settle(pilot)

    assert snap_compare(
        create_app(services), terminal_size=(80, 24), run_before=run_before
    )


@pytest.mark.parametrize("size", SIZES)
def test_approvals_queue(
    snap_compare: SnapCompare, services: Services, size: tuple[int, int], tmp_path: Path
) -> None:
    """Approvals queue with one waiting onboarding approval: countdown "72h00m",
    runbook, step, "#1", asked by bob, "✘ not you" (alice is no lead); the detail
    shows the message with the literal "Dana [/" name, the steps that run next
    (home, welcome, close) with their inputs, the params, and who may decide; y and
    n are dim in the footer, since alice may not decide."""

    async def run_before(pilot: Pilot[None]) -> None:
        await services.engine.start(
            "onboard-new-joiner",
            {
                "full_name": "Dana [/",
                "username": "dana",
                "start_date": "2026-12-07",
                "root": "/tmp/haloterm-snapshot",
            },
            operator="bob",
        )
        await wait_for(pilot, lambda: pilot.app.waiting_approvals == 1)  # type: ignore[attr-defined]
        await pilot.press("a")
        screen = pilot.app.screen
        assert isinstance(screen, ApprovalsScreen)
        await wait_for(pilot, lambda: len(screen.waiting) == 1)
        await _settle(pilot)

    assert snap_compare(create_app(services), terminal_size=size, run_before=run_before)


def test_help_screen(snap_compare: SnapCompare, services: Services) -> None:
    """Help over the main screen at 80x24: "Keys: Tickets and runbooks", then two
    columns: "On this screen" (First, Last, Newest P1, Filter, Sort, Reverse, the
    four sorts, Run) with tooltips, and "Anywhere" (Quit, Help,
    Approvals, History, Schedules, palette) above "Moving around" (cursor keys)."""

    async def run_before(pilot: Pilot[None]) -> None:
        await _settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(
        create_app(services), terminal_size=(80, 24), run_before=run_before
    )


def test_too_small(snap_compare: SnapCompare, services: Services) -> None:
    """At 50x12 only the boxed notice "Terminal too small (need 60x16, have 50x12)"."""

    async def run_before(pilot: Pilot[None]) -> None:
        await _settle(pilot)

    assert snap_compare(
        create_app(services), terminal_size=(50, 12), run_before=run_before
    )
