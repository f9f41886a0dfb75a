"""The schedules view: next fires, the lease line, pause and resume from the console."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from haloterm.app import create_app
from haloterm.screens.schedules import SchedulesScreen
from haloterm.services import Services
from tests.ui.conftest import wait_for

SnapCompare = Callable[..., bool]
SIZE = (100, 30)
SCHEDULE = "disk-memory-report#2"
"""Weekdays at 07:00 UTC; the frozen clock is Tuesday 2025-06-03 15:00 UTC."""


def _cell(screen: SchedulesScreen, row: str, column: str) -> str:
    table = screen.query_one("#schedules", DataTable)
    return str(table.get_cell(row, column))


async def _open(pilot: Pilot[None]) -> SchedulesScreen:
    await wait_for(pilot, lambda: True)
    await pilot.press("w")
    screen = pilot.app.screen
    assert isinstance(screen, SchedulesScreen)
    await wait_for(pilot, lambda: bool(screen.overview.rows), what="schedules")
    return screen


async def test_schedules_show_next_fires_and_pause_resume(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot)
        fires = _cell(screen, SCHEDULE, "next fires").splitlines()
        assert fires[0] == "2025-06-04T07:00:00+00:00 UTC"
        assert fires[1] == "2025-06-05T07:00:00+00:00 UTC"
        assert _cell(screen, SCHEDULE, "state") == "active"
        lease = str(screen.query_one("#lease-line", Static).render())
        assert "no session holds the lease" in lease

        table = screen.query_one("#schedules", DataTable)
        ids = [row.id for row in screen.overview.rows]
        table.move_cursor(row=ids.index(SCHEDULE))
        await pilot.press("p")
        await wait_for(
            pilot,
            lambda: _cell(screen, SCHEDULE, "state") == "paused",
            what="paused",
        )
        state = services.store.schedule_states()[SCHEDULE]
        assert state.paused and state.paused_by == "alice"

        await pilot.press("u")
        await wait_for(
            pilot,
            lambda: _cell(screen, SCHEDULE, "state") == "active",
            what="resumed",
        )
        assert not services.store.schedule_states()[SCHEDULE].paused
        audit = services.store.list_audit(target_type="schedule", target_id=SCHEDULE)
        assert [(a.action, a.actor) for a in audit] == [
            ("schedule.resume", "alice"),
            ("schedule.pause", "alice"),
        ]

        await pilot.press("escape")
        assert not isinstance(app.screen, SchedulesScreen)


def test_schedules_snapshot(snap_compare: SnapCompare, services: Services) -> None:
    """Schedules at 100x30: the line "automation: no session holds the lease;
    schedules wait", a table with disk-memory-report#2 (0 7 * * 1-5, UTC) and
    store-maintenance#1 (15 1 * * *, UTC), the second paused, the first active
    with three next fires from 2025-06-04T07:00:00+00:00 UTC, "2 schedules" below,
    and a footer with Back, Pause and Reload (Resume is hidden: the cursor is on an
    active schedule)."""
    services.store.set_schedule_paused("store-maintenance#1", True, actor="alice")

    async def run_before(pilot: Pilot[None]) -> None:
        pilot.app.animation_level = "none"
        await _open(pilot)
        await wait_for(pilot, lambda: True)

    assert snap_compare(create_app(services), terminal_size=SIZE, run_before=run_before)
