"""The main screen: ticket list paging, filter, sort, live rows, runbook list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.coordinate import Coordinate
from textual.widgets import Label
from textual.widgets.data_table import ColumnKey

from haloterm.app import create_app
from haloterm.engine.events import LogLine
from haloterm.screens.main import MainScreen
from haloterm.screens.run_form import RunForm
from haloterm.screens.ticket import TicketScreen
from haloterm.services import Services
from haloterm.widgets.filter_bar import FilterBar
from haloterm.widgets.runbook_list import RunbookList
from haloterm.widgets.ticket_table import PAGE_SIZE, TicketTable
from tests.ui.conftest import wait_for

C28 = [
    "Disk full on [/var] again",
    "[bold]URGENT[/bold]",
    "[/",
    "[link=http://evil.example]click[/link]",
]


def _bulk_tickets(services: Services, count: int) -> None:
    now = services.store.now().isoformat(timespec="microseconds")
    rows = [
        (
            f"Bulk ticket {i:05d}",
            ["P1", "P2", "P3", "P4"][i % 4],
            ["open", "resolved"][i % 2],
            now,
            now,
        )
        for i in range(count)
    ]

    def insert(conn: Any) -> None:
        conn.executemany(
            "INSERT INTO tickets (title, priority, status, type, description, fields,"
            " source, created_at, updated_at) VALUES (?, ?, ?, 'incident', '', '{}',"
            " 'manual', ?, ?)",
            rows,
        )

    services.store.write(insert)


def _title(app: Any) -> str:
    return str(app.screen.query_one("#tickets-title", Label).content)


async def test_main_screen_lists_seeded_tickets_and_runbooks(
    services: Services,
) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.page is not None, what="first page")
        assert isinstance(app.screen, MainScreen)
        assert table.row_count == 6
        assert "1-6 of 6" in _title(app)
        runbooks = app.screen.query_one(RunbookList)
        await wait_for(pilot, lambda: runbooks.row_count > 0, what="runbooks")
        assert "restart-demo-service" in [s.name for s in runbooks.summaries]
        assert app.focused is not None and app.focused.id == "tickets"
        await pilot.press("tab")
        assert app.focused is not None and app.focused.id == "runbooks"


async def test_c28_titles_show_literally(services: Services) -> None:
    for title in C28:
        services.store.create_ticket(title=title, priority="P1", actor="alice")
    app = create_app(services)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.row_count == 10, what="rows")
        cells = [
            table.get_cell_at(Coordinate(row, 3)) for row in range(table.row_count)
        ]
        shown = {cell.plain: cell for cell in cells}
        for title in C28:
            assert title in shown
            assert not any(
                span.style and "link" in str(span.style) for span in shown[title].spans
            )


async def test_paging_end_and_back(services: Services) -> None:
    _bulk_tickets(services, PAGE_SIZE * 3 + 7)
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.page is not None, what="first page")
        total = PAGE_SIZE * 3 + 13
        assert table.row_count == PAGE_SIZE
        assert f"1-{PAGE_SIZE} of {total:,}" in _title(app)

        await pilot.press("end")
        await wait_for(pilot, lambda: table.page is not None and table.page.start > 0)
        assert table.page is not None
        assert table.page.start + table.row_count == total
        assert table.cursor_row == table.row_count - 1
        assert not table.page.has_next
        last_page_ids = [t.id for t in table.page.rows]

        # Above the first row of a page reads the page before it.
        table.move_cursor(row=0)
        start = table.page.start
        await pilot.press("up")
        await wait_for(
            pilot, lambda: table.page is not None and table.page.start < start
        )
        assert table.page is not None
        assert table.cursor_row == table.row_count - 1
        assert table.page.rows[-1].id != last_page_ids[0]
        seen = {t.id for t in table.page.rows}
        assert not seen & set(last_page_ids)

        # Below the last row reads the next page again.
        await pilot.press("down")
        await wait_for(
            pilot, lambda: table.page is not None and table.page.start == start
        )
        assert table.page is not None
        assert [t.id for t in table.page.rows] == last_page_ids

        await pilot.press("home")
        await wait_for(pilot, lambda: table.page is not None and table.page.start == 0)


async def test_filter_bar_applies_and_clears(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        await pilot.press("slash")
        assert isinstance(app.focused, FilterBar)
        await pilot.press(*"priority:P1", "enter")
        await wait_for(pilot, lambda: table.row_count == 1, what="filtered")
        assert "filter: priority:P1" in _title(app)
        assert app.focused is not None and app.focused.id == "tickets"
        await pilot.press("slash", *" web", "escape")
        await wait_for(pilot, lambda: table.row_count == 6, what="cleared")
        assert not app.screen.query_one(FilterBar).has_class("-open")

        await pilot.press("slash", *"status:open type:problem edge", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        ticket = table.selected_ticket
        assert ticket is not None and ticket.type == "problem"
        # Back in the list, Esc drops the applied filter too.
        assert app.focused is not None and app.focused.id == "tickets"
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.row_count == 6, what="cleared from list")
        assert "filter:" not in _title(app)
        assert app.screen.check_action("clear_filter", ()) is False
        # A typo in a known term is an error, not an empty list.
        await pilot.press("slash", *"status:opn", "enter")
        await wait_for(
            pilot,
            lambda: any("status is one of" in n.message for n in app._notifications),
            what="filter error",
        )
        assert table.row_count == 6


async def test_sort_cycles_and_reverses(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        await pilot.press("s")
        await pilot.press("s")
        await wait_for(pilot, lambda: table.ticket_query.sort == "priority")
        await wait_for(pilot, lambda: "by priority" in _title(app))
        assert table.page is not None
        assert [t.priority for t in table.page.rows][0] == "P1"
        await pilot.press("S")
        await wait_for(pilot, lambda: "▲" in _title(app))
        assert table.page is not None
        assert table.page.rows[0].priority == "P4"


async def test_live_ticket_changes_redraw_rows(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        ticket = table.page.rows[0] if table.page else None
        assert ticket is not None
        services.store.update_ticket(ticket.id, actor="bob", status="acknowledged")
        # Another console's write: noticed through the store's data version.
        await wait_for(
            pilot,
            lambda: str(table.get_cell(str(ticket.id), "status")) == "acknowledged",
            what="status redrawn",
        )
        services.store.create_ticket(title="Brand new", priority="P2", actor="bob")
        await wait_for(pilot, lambda: table.row_count == 7, what="new row")


async def test_enter_opens_ticket_and_p_jumps_to_newest_p1(services: Services) -> None:
    newest = services.store.create_ticket(title="Newest fire", priority="P1", actor="a")
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, TicketScreen))
        assert isinstance(app.screen, TicketScreen)
        assert app.screen.ticket_id == newest
        await pilot.press("escape")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TicketScreen))


async def test_number_keys_sort_by_one_column_and_reverse(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        await pilot.press("1")
        await wait_for(pilot, lambda: "by priority ▼" in _title(app))
        assert table.page is not None and table.page.rows[0].priority == "P1"
        assert str(table.columns[ColumnKey("priority")].label) == "Pri ▼"
        await pilot.press("1")
        await wait_for(pilot, lambda: "by priority ▲" in _title(app))
        assert table.page is not None and table.page.rows[0].priority == "P4"
        assert str(table.columns[ColumnKey("priority")].label) == "Pri ▲"
        await pilot.press("4")
        await wait_for(pilot, lambda: "by number ▼" in _title(app))
        assert table.page is not None
        ids = [t.id for t in table.page.rows]
        assert ids == sorted(ids, reverse=True)
        assert str(table.columns[ColumnKey("priority")].label) == "Pri"
        # A click on the Age header sorts by age; digits typed in the filter stay text.
        await pilot.click(TicketTable, offset=(37 + 40, 0))
        await wait_for(pilot, lambda: "by created ▼" in _title(app))
        await pilot.press("slash", "2")
        assert app.screen.query_one(FilterBar).value == "2"
        assert "by created ▼" in _title(app)


@pytest.mark.parametrize(("size", "title"), [((120, 40), 60), ((80, 24), 20)])
async def test_title_takes_the_free_width_from_the_first_paint(
    services: Services, size: tuple[int, int], title: int
) -> None:
    """Issue "Console": the Title column was 11 cells wide until a later resize."""
    app = create_app(services)
    async with app.run_test(size=size) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.page is not None)
        assert table.columns[ColumnKey("title")].width == title
        await pilot.resize_terminal(100, 30)
        await wait_for(pilot, lambda: table.size.width == 100)
        assert table.columns[ColumnKey("title")].width == 40
        assert table.row_count == 6


async def test_other_consoles_runs_redraw_their_row_and_keep_the_cursor(
    services: Services, open_services: Callable[..., Services]
) -> None:
    """Runs from another process reach the Runs column through the data version; a
    run's log lines alone redraw nothing."""
    app = create_app(services)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        table.move_cursor(row=3)
        page = table.page
        assert page is not None
        ticket = page.rows[2]
        other = open_services("bob").store
        run = other.create_execution(
            runbook="disk-report",
            version=1,
            params={},
            secret_params=[],
            trigger="manual",
            operator="bob",
            ticket_id=ticket.id,
            step_ids=["s"],
        )
        other.update_execution(run.id, status="failed")
        await wait_for(
            pilot,
            lambda: "failed" in str(table.get_cell(str(ticket.id), "runs")),
            what="run status on the row",
        )
        assert table.page is page and table.cursor_row == 3
        seen = page.version
        at = other.now()
        other.append_logs(
            [LogLine(run.id, "s", "", "stdout", seq, at, "x") for seq in range(20)]
        )
        other.flush()
        await wait_for(pilot, lambda: page.version != seen, what="logs noticed")
        assert table.page is page and table.cursor_row == 3


async def test_home_and_end_go_to_the_first_and_last_runbook(
    services: Services,
) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        runbooks = app.screen.query_one(RunbookList)
        await wait_for(pilot, lambda: runbooks.row_count == 5)
        await pilot.press("tab")
        assert app.focused is runbooks
        await pilot.press("end")
        assert runbooks.cursor_row == 4
        await pilot.press("home")
        assert runbooks.cursor_row == 0


async def test_r_in_the_ticket_list_runs_the_runbook_that_fits_the_ticket(
    services: Services,
) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        await pilot.press("slash", *"priority:P1", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunForm), what="form")
        form = app.screen
        assert isinstance(form, RunForm)
        assert form.runbook_name == "restart-demo-service"
        assert form.ticket_id == table.selected_ticket.id  # type: ignore[union-attr]
        await pilot.press("escape")
        # A ticket no rule fits: say so, and how to pick one.
        await pilot.press("escape", "slash", *"type:problem", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("r")
        await wait_for(
            pilot,
            lambda: any(
                "No runbook's rules fit" in n.message for n in app._notifications
            ),
            what="no-fit notice",
        )
        assert not isinstance(app.screen, RunForm)
