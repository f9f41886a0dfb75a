"""The main screen: the ticket list and the runbook list, live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label

from haloterm.engine.events import Event, ExecutionChanged, TicketChanged
from haloterm.storage import TicketQuery, parse_ticket_filter
from haloterm.widgets.filter_bar import FilterBar
from haloterm.widgets.footer import KeyFooter
from haloterm.widgets.runbook_list import RunbookList
from haloterm.widgets.ticket_table import PAGE_SIZE, SORT_COLUMNS, TicketTable

if TYPE_CHECKING:
    from haloterm.app import HalotermApp
    from haloterm.models import Execution, Ticket
    from haloterm.screens.ticket import Suggestion

SORTS = ("updated_at", "created_at", "priority", "id")
_SORT_NAMES = {
    "updated_at": "last update",
    "created_at": "created",
    "priority": "priority",
    "id": "number",
}
OPEN_STATUSES = ["open", "acknowledged", "in_progress"]


class MainScreen(Screen[None]):
    """Tickets above, runbooks below; Tab moves between them."""

    CSS_PATH = "main.tcss"
    AUTO_FOCUS = "#tickets"
    SCREEN_TITLE = "Tickets and runbooks"
    HELP = (
        "Enter opens the ticket or runbook under the cursor. End and Home jump to the "
        "last and first ticket; the list is read from the store a page at a time. "
        "1 sorts by priority, 2 by age, 3 by last update, 4 by number (again: "
        "reversed); a click on the Pri or Age header does the same."
    )
    BINDINGS = [
        Binding("p", "newest_p1", "Newest P1", id="newest-p1", tooltip="Open it"),
        Binding("slash", "filter", "Filter", id="filter", tooltip="priority:P1 text"),
        Binding("s", "cycle_sort", "Sort", id="sort", tooltip="Next sort column"),
        Binding("S", "reverse_sort", "Reverse", id="reverse-sort", show=False),
        Binding(
            "1", "sort_by('priority')", "By priority", id="sort-priority", show=False
        ),
        Binding("2", "sort_by('created_at')", "By age", id="sort-age", show=False),
        Binding(
            "3", "sort_by('updated_at')", "By update", id="sort-update", show=False
        ),
        Binding("4", "sort_by('id')", "By number", id="sort-number", show=False),
        Binding(
            "r",
            "run_runbook",
            "Run",
            id="start-run",
            tooltip="The selected runbook, or the one that fits the selected ticket",
        ),
        Binding(
            "escape",
            "clear_filter",
            "Clear filter",
            id="main-clear-filter",
            tooltip="Show every ticket again",
        ),
    ]

    app: HalotermApp

    def __init__(self) -> None:
        super().__init__()
        self._finding_p1 = False

    @property
    def keys_ready(self) -> bool:
        """False while what the next key acts on is still being read; the app holds
        keys typed meanwhile and replays them once this turns True."""
        if self._finding_p1 or not self.is_mounted:
            return False
        return self.tickets.page is not None and self.runbooks.loaded

    def compose(self) -> ComposeResult:
        store = self.app.services.store
        yield Header()
        with Vertical(id="tickets-pane"):
            yield Label("Tickets", id="tickets-title")
            yield FilterBar(id="filter-bar")
            yield TicketTable(store, self.app.clock, id="tickets")
        with Vertical(id="runbooks-pane"):
            yield Label("Runbooks  (Enter view, r run)", id="runbooks-title")
            yield RunbookList(store, id="runbooks")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(TicketTable).focus()

    def on_store_changed(self) -> None:
        """Something was committed, here or elsewhere (called by the app)."""
        self.tickets.check_store()

    @property
    def tickets(self) -> TicketTable:
        return self.query_one(TicketTable)

    @property
    def runbooks(self) -> RunbookList:
        return self.query_one(RunbookList)

    # ------------------------------------------------------------------ display

    def on_ticket_table_page_shown(self, event: TicketTable.PageShown) -> None:
        query = self.tickets.ticket_query
        arrow = "▼" if query.descending else "▲"
        shown = "no tickets"
        if event.count:
            last = event.start + event.count
            shown = f"{event.start + 1:,}-{last:,} of {event.total:,}"
        sort = f"by {_SORT_NAMES[query.sort]} {arrow}"
        text = f"Tickets  {shown}  {sort}"
        if self.tickets.filter_text:
            text += f"  filter: {self.tickets.filter_text}"
        self.query_one("#tickets-title", Label).update(Text(text))
        # Whether r has a ticket to run for changed with the page.
        self.refresh_bindings()
        self.app.replay_keys()

    def on_runbook_list_loaded(self) -> None:
        self.app.replay_keys()

    # ------------------------------------------------------------------ live

    def on_engine_event(self, event: Event) -> None:
        """Refresh the rows an engine event touches (called by the app)."""
        if isinstance(event, TicketChanged):
            self.refresh_ticket(event.ticket_id, event.kind)
        elif isinstance(event, ExecutionChanged):
            if event.ticket_id is not None and self.tickets.has_ticket(event.ticket_id):
                self.refresh_run(event.execution_id)
            if event.status in ("succeeded", "failed", "cancelled", "interrupted"):
                self.runbooks.reload()

    @work(thread=True, group="ticket-row", exit_on_error=False)
    def refresh_ticket(self, ticket_id: int, kind: str) -> None:
        """Redraw one changed ticket's row, or re-read the page for a new one."""
        ticket = self.app.services.store.get_ticket(ticket_id)
        self.app.call_from_thread(self._ticket_changed, ticket, kind)

    def _ticket_changed(self, ticket: Ticket | None, kind: str) -> None:
        if ticket is not None and self.tickets.update_ticket(ticket):
            return
        if kind == "created":
            self.tickets.load("reload")

    @work(thread=True, group="ticket-row", exit_on_error=False)
    def refresh_run(self, execution_id: int) -> None:
        """Read one changed run and show its status on its ticket's row."""
        run = self.app.services.store.get_execution(execution_id)
        if run is not None:
            self.app.call_from_thread(self._run_changed, run)

    def _run_changed(self, run: Execution) -> None:
        if run.ticket_id is not None:
            self.tickets.update_run(run.ticket_id, run)

    def on_ticket_table_runs_moved(self) -> None:
        self.runbooks.reload()

    # ------------------------------------------------------------------ actions

    def on_ticket_table_ticket_selected(
        self, event: TicketTable.TicketSelected
    ) -> None:
        self.open_ticket(event.ticket_id)

    def on_runbook_list_runbook_chosen(self, event: RunbookList.RunbookChosen) -> None:
        from haloterm.screens.runbook import RunbookScreen

        self.app.push_screen(RunbookScreen(event.runbook))

    def open_ticket(self, ticket_id: int) -> None:
        from haloterm.screens.ticket import TicketScreen

        self.app.push_screen(TicketScreen(ticket_id))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run_runbook":
            if self.focused is self.tickets:
                return self.tickets.selected_ticket is not None or None
            return self.focused is self.runbooks or None
        if action == "clear_filter":
            return bool(self.tickets.filter_text)
        if action in ("cycle_sort", "reverse_sort", "sort_by", "newest_p1"):
            # Shown but off while typing a filter: the footer keeps its keys, so
            # focus moving in and out of the bar only dims them (no rebuild).
            return not isinstance(self.focused, FilterBar) or None
        return True

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    def action_run_runbook(self) -> None:
        """Open the run form: for the selected runbook, or, in the ticket list, for
        the runbook whose rules fit the selected ticket, params filled from it."""
        from haloterm.screens.run_form import RunForm

        if self.focused is self.tickets:
            ticket = self.tickets.selected_ticket
            if ticket is not None:
                self._run_fitting(ticket)
            return
        name = self.runbooks.selected_name
        if name is not None:
            self.app.push_screen(RunForm(name))

    @work(thread=True, exclusive=True, group="run-fitting", exit_on_error=False)
    def _run_fitting(self, ticket: Ticket) -> None:
        from haloterm.screens.ticket import suggestions_for

        found = suggestions_for(self.app.services.store, ticket)
        self.app.call_from_thread(self._open_fitting, ticket, found)

    def _open_fitting(self, ticket: Ticket, found: list[Suggestion]) -> None:
        from haloterm.screens.run_form import RunForm

        if not found or not found[0].matched:
            self.notify(
                f"No runbook's rules fit ticket #{ticket.id}: Enter opens it to pick "
                "one, Tab goes to the runbook list.",
                markup=False,
            )
            return
        best = found[0]
        form = RunForm(best.name, ticket_id=ticket.id, params=best.params)
        self.app.push_screen(form)

    def action_filter(self) -> None:
        """Open the filter bar."""
        self.query_one(FilterBar).open()

    def action_clear_filter(self) -> None:
        """Drop the applied filter: Esc in the list does what Esc in the bar does."""
        self.query_one(FilterBar).action_clear_filter()

    def on_filter_bar_applied(self, event: FilterBar.Applied) -> None:
        try:
            parsed = parse_ticket_filter(event.text)
        except ValueError as exc:
            self.notify(str(exc), title="Filter", severity="error", markup=False)
            return
        current = self.tickets.ticket_query
        self.tickets.filter_text = event.text.strip()
        self.tickets.ticket_query = parsed.model_copy(
            update={
                "sort": current.sort,
                "descending": current.descending,
                "limit": PAGE_SIZE,
            }
        )
        self.tickets.focus()
        self.refresh_bindings()

    def on_filter_bar_cleared(self) -> None:
        current = self.tickets.ticket_query
        self.tickets.filter_text = ""
        self.tickets.ticket_query = TicketQuery(
            sort=current.sort, descending=current.descending, limit=PAGE_SIZE
        )
        self.tickets.focus()
        self.refresh_bindings()

    def action_cycle_sort(self) -> None:
        """Sort the tickets by the next column."""
        current = self.tickets.ticket_query
        sort = SORTS[(SORTS.index(current.sort) + 1) % len(SORTS)]
        self.tickets.ticket_query = current.model_copy(
            update={"sort": sort, "descending": True}
        )

    def action_sort_by(self, sort: str) -> None:
        """Sort by one column; the same key again reverses the order."""
        current = self.tickets.ticket_query
        if sort not in SORTS:
            return
        descending = not current.descending if current.sort == sort else True
        self.tickets.ticket_query = current.model_copy(
            update={"sort": sort, "descending": descending}
        )

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on the Pri or Age header sorts by it (again: reversed)."""
        sort = SORT_COLUMNS.get(str(event.column_key.value))
        if event.data_table is self.tickets and sort is not None:
            event.stop()
            self.action_sort_by(sort)

    def action_reverse_sort(self) -> None:
        """Reverse the ticket order."""
        current = self.tickets.ticket_query
        self.tickets.ticket_query = current.model_copy(
            update={"descending": not current.descending}
        )

    def action_newest_p1(self) -> None:
        """Open the newest P1 ticket that is not resolved."""
        self._finding_p1 = True
        self.find_newest_p1()

    @work(thread=True, exclusive=True, group="newest-p1", exit_on_error=False)
    def find_newest_p1(self) -> None:
        query = TicketQuery(
            priority=["P1"], status=OPEN_STATUSES, sort="created_at", limit=1
        )
        found = -1  # a failed read is reported by the worker's error handler
        try:
            rows = self.app.services.store.query_tickets(query).rows
            found = rows[0].id if rows else 0
        finally:
            self.app.call_from_thread(self._found_p1, found)

    def _found_p1(self, ticket_id: int) -> None:
        self._finding_p1 = False
        if ticket_id > 0:
            self.open_ticket(ticket_id)
        elif ticket_id == 0:
            self.notify("No open P1 ticket.")
        self.app.replay_keys()
