"""The ticket list: one page of a store query at a time, never the whole table.

Rows come from ``store.query_tickets`` with keyset paging; moving past the last row of
the page reads the next page, above the first row the previous one (a reversed query
from the first row's key), End the last page. All filtering and sorting is the store's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from rich.style import Style
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.message import Message
from textual.reactive import var
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from haloterm.storage import TicketCursor, TicketQuery
from haloterm.storage.clock import to_text
from haloterm.widgets.status import status_text

if TYPE_CHECKING:
    from haloterm.models import Execution, Ticket
    from haloterm.storage import Store
    from haloterm.storage.tickets import ConsoleStamp

PAGE_SIZE = 100
Move = Literal["first", "next", "prev", "last", "reload"]
_COLUMNS = (
    ("priority", "Pri", 6),
    ("status", "Status", 12),
    ("type", "Type", 10),
    ("title", "Title", 0),
    ("age", "Age", 5),
    ("runs", "Runs", 13),
)
AGE_REFRESH = 30.0
"""Seconds between redraws of the Age column (its coarsest unit shown is minutes)."""
SORT_COLUMNS = {"priority": "priority", "age": "created_at"}
"""Columns whose header sorts the list, and the sort each one stands for."""
_FIXED = sum(width for _, _, width in _COLUMNS) + 2 * len(_COLUMNS) + 2


def title_width(table_width: int) -> int:
    """The Title column's width: what the other columns leave, never below 12."""
    return max(12, table_width - _FIXED)


def age(since: datetime, now: datetime) -> str:
    """A short age: ``45s``, ``12m``, ``5h``, ``3d``, ``8w``."""
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def sort_value(ticket: Ticket, sort: str) -> str | int | None:
    """The value a ticket has in the sort column, as the store's cursor holds it."""
    if sort == "id":
        return ticket.id
    if sort == "priority":
        return ticket.priority
    value: datetime = getattr(ticket, sort)
    return to_text(value)


@dataclass
class Page:
    """A page of tickets as shown, with where it sits in the whole result."""

    rows: list[Ticket]
    runs: dict[int, Execution | None]
    start: int
    total: int
    has_prev: bool
    has_next: bool
    cursor_row: int = 0
    query: TicketQuery = field(default_factory=TicketQuery)
    version: int = 0
    """The store's data version read just before the page was."""
    stamp: ConsoleStamp | None = None
    """Where tickets and runs stood when the page was read."""


class TicketTable(DataTable[Any]):
    """Tickets, a page at a time; P1 rows carry a glyph and the ``--p1`` style."""

    DEFAULT_CSS = """
    TicketTable > .ticket-table--p1 { text-style: bold; color: $error; }
    TicketTable > .ticket-table--closed { color: $text-muted; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "ticket-table--p1",
        "ticket-table--closed",
    }
    BINDINGS = [
        Binding("end", "last_page", "Last", show=False, id="tickets-end"),
        Binding("home", "first_page", "First", show=False, id="tickets-home"),
    ]

    class PageShown(Message):
        """A page was shown: where it sits in the result, and the total."""

        def __init__(self, table: TicketTable, start: int, count: int, total: int):
            super().__init__()
            self.table = table
            self.start = start
            self.count = count
            self.total = total

    class RunsMoved(Message):
        """Runs started or finished, or runbooks changed, since the page was read."""

        def __init__(self, table: TicketTable) -> None:
            super().__init__()
            self.table = table

    class TicketSelected(Message):
        """Enter on a ticket."""

        def __init__(self, ticket_id: int) -> None:
            super().__init__()
            self.ticket_id = ticket_id

    ticket_query: var[TicketQuery] = var(TicketQuery(limit=PAGE_SIZE), init=False)
    """Filters and sort order; setting it shows the first page of the new result."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.store = store
        self.clock = clock
        self.page: Page | None = None
        self.filter_text = ""
        """The filter as the operator typed it, for display."""
        self._counts: dict[tuple[Any, ...], tuple[tuple[int, int], int]] = {}
        """Filter key to (ticket stamp, count): counted again only when tickets
        change, never because runs wrote logs."""

    def on_mount(self) -> None:
        for key, label, width in _COLUMNS:
            self.add_column(label, width=width or title_width(self.size.width), key=key)
        self._mark_sorted_column()
        self.load("first")
        self.set_interval(AGE_REFRESH, self._refresh_ages)

    def _refresh_ages(self) -> None:
        # Nothing else redraws an unchanged row, so ages would stand still.
        if self.page is None:
            return
        now = self.clock()
        for ticket in self.page.rows:
            self.update_cell(str(ticket.id), "age", Text(age(ticket.created_at, now)))

    def watch_ticket_query(self) -> None:
        self.load("first")

    def _mark_sorted_column(self) -> None:
        # The column the list is sorted by carries the direction in its header.
        # Marked with the page that shows the new order, so the table repaints once.
        query = self.ticket_query
        arrow = " ▼" if query.descending else " ▲"
        for key, label, _ in _COLUMNS:
            column = self.columns.get(ColumnKey(key))
            if column is not None:
                sorted_here = SORT_COLUMNS.get(key) == query.sort
                column.label = Text(label + (arrow if sorted_here else ""))
        self._clear_caches()
        self.refresh()

    # ------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="ticket-page", exit_on_error=False)
    def load(self, move: Move, cursor_row: int = 0) -> None:
        """Read one page (and the total) in a thread, then show it."""
        query = self.ticket_query
        page = self._read(query, move, self.page, cursor_row)
        if page is not None:
            self.app.call_from_thread(self._show, page)

    def _read(
        self, query: TicketQuery, move: Move, current: Page | None, cursor_row: int
    ) -> Page | None:
        store = self.store
        version = store.data_version()
        stamp = store.console_stamp()
        total = self._count(query, stamp)
        base = query.model_copy(update={"limit": PAGE_SIZE, "after": None})
        reverse = base.model_copy(update={"descending": not base.descending})
        rows = current.rows if current else []
        if move in ("next", "prev", "reload") and (current is None or not rows):
            move = "first"
        elif move == "reload" and current is not None and current.start == 0:
            # New rows may sort ahead of the first one shown.
            move = "first"
        has_prev = False
        start = 0
        if move == "first":
            page = store.query_tickets(base, matches=total)
            found, has_next = page.rows, page.next_cursor is not None
        elif move == "last":
            page = store.query_tickets(reverse, matches=total)
            found, has_next = page.rows[::-1], False
            has_prev = page.next_cursor is not None
            start = max(0, total - len(found))
        elif move == "prev":
            assert current is not None
            after = self._cursor(rows[0], query.sort)
            page = store.query_tickets(
                reverse.model_copy(update={"after": after}), matches=total
            )
            if not page.rows:
                return None
            found, has_next = page.rows[::-1], True
            has_prev = page.next_cursor is not None
            start = max(0, current.start - len(found))
            cursor_row = len(found) - 1
        else:
            assert current is not None
            if move == "next":
                after = self._cursor(rows[-1], query.sort)
                start = current.start + len(rows)
            else:
                after = self._cursor_before(rows[0], query)
                start = current.start
            page = store.query_tickets(
                base.model_copy(update={"after": after}), matches=total
            )
            if move == "next" and not page.rows:
                return None
            found, has_next = page.rows, page.next_cursor is not None
            has_prev = start > 0
        latest = store.latest_runs([ticket.id for ticket in found])
        runs = {ticket.id: latest.get(ticket.id) for ticket in found}
        return Page(
            found,
            runs,
            start,
            total,
            has_prev,
            has_next,
            cursor_row,
            query,
            version,
            stamp,
        )

    def _count(self, query: TicketQuery, stamp: ConsoleStamp) -> int:
        key = query.filter_key()
        cached = self._counts.get(key)
        if cached is not None and cached[0] == stamp.tickets:
            return cached[1]
        count = self.store.count_tickets(query)
        if len(self._counts) > 32:
            self._counts.clear()
        self._counts[key] = (stamp.tickets, count)
        return count

    @staticmethod
    def _cursor(ticket: Ticket, sort: str) -> TicketCursor:
        return TicketCursor(value=sort_value(ticket, sort), id=ticket.id)

    @staticmethod
    def _cursor_before(ticket: Ticket, query: TicketQuery) -> TicketCursor:
        # A key just ahead of the row, so that the page read again starts with it.
        # Ties on the sort value are broken by id in the same direction as the sort.
        ahead = 1 if query.descending else -1
        if query.sort == "priority":
            ahead = -ahead
        return TicketCursor(value=sort_value(ticket, query.sort), id=ticket.id + ahead)

    # ------------------------------------------------------------------ showing

    def _show(self, page: Page) -> None:
        if page.query != self.ticket_query:
            return
        current, self.page = self.page, page
        if current is None or current.query != page.query:
            self._mark_sorted_column()
        same_rows = current is not None and [t.id for t in current.rows] == [
            t.id for t in page.rows
        ]
        if same_rows and current is not None:
            # The same tickets in the same order: redraw only what changed, so a
            # live refresh keeps the cursor and scroll and costs nothing when idle.
            for old, new in zip(current.rows, page.rows, strict=True):
                if old != new or current.runs.get(old.id) != page.runs.get(new.id):
                    self._redraw(new)
            if page.rows:
                self.move_cursor(
                    row=min(page.cursor_row, len(page.rows) - 1), animate=False
                )
        else:
            self._fill(page)
        self.post_message(self.PageShown(self, page.start, len(page.rows), page.total))

    def _fill(self, page: Page) -> None:
        self.clear()
        for ticket in page.rows:
            self.add_row(
                *self._cells(ticket, page.runs.get(ticket.id)), key=str(ticket.id)
            )
        if page.rows:
            self.move_cursor(
                row=min(page.cursor_row, len(page.rows) - 1), animate=False
            )

    def _cells(self, ticket: Ticket, run: Execution | None) -> list[Text]:
        now = self.clock()
        closed = ticket.status in ("resolved", "closed")
        style: Style | str = ""
        if ticket.priority == "P1":
            style = self.get_component_rich_style("ticket-table--p1", partial=True)
        elif closed:
            style = self.get_component_rich_style("ticket-table--closed", partial=True)
        glyph = "▲" if ticket.priority == "P1" else " "
        title = Text(ticket.title, no_wrap=True, overflow="ellipsis", end="")
        title.stylize(style)
        cells = [
            Text(f"{glyph}{ticket.priority}", style=style),
            Text(ticket.status.replace("_", " "), style=style),
            Text(ticket.type, style=style),
            title,
            Text(age(ticket.created_at, now)),
            status_text(run.status.value) if run else Text("-", style="dim"),
        ]
        return cells

    def on_resize(self) -> None:
        # The title takes what the other columns leave; only its width changes, so
        # the rows stay as they are (no rebuild, no re-read).
        column = self.columns.get(ColumnKey("title"))
        wanted = title_width(self.size.width)
        if column is None or column.width == wanted:
            return
        column.width = wanted
        self._require_update_dimensions = True
        self._clear_caches()
        self.refresh()

    # ------------------------------------------------------------------ live

    @work(thread=True, exclusive=True, group="ticket-check", exit_on_error=False)
    def check_store(self) -> None:
        """Notice commits from any process and redraw what they changed.

        Runs writing logs move the data version many times a second; that alone
        costs two small index reads here. A new or changed ticket re-reads the page
        (and the count); a changed run redraws its row only.
        """
        page = self.page
        version = self.store.data_version()
        if page is None or version == page.version:
            return
        stamp = self.store.console_stamp()
        if page.stamp is None or stamp.tickets != page.stamp.tickets:
            self.app.call_from_thread(self._tickets_moved, page, stamp)
            return
        runs = self.store.latest_runs([ticket.id for ticket in page.rows])
        changed = {
            ticket.id: runs.get(ticket.id)
            for ticket in page.rows
            if runs.get(ticket.id) != page.runs.get(ticket.id)
        }
        self.app.call_from_thread(self._runs_moved, page, version, stamp, changed)

    def _tickets_moved(self, page: Page, stamp: ConsoleStamp) -> None:
        if self.page is not page:
            return
        if page.stamp is None or page.stamp[1:] != stamp[1:]:
            self.post_message(self.RunsMoved(self))
        self.load("reload", cursor_row=self.cursor_row)

    def _runs_moved(
        self,
        page: Page,
        version: int,
        stamp: ConsoleStamp,
        changed: dict[int, Execution | None],
    ) -> None:
        if self.page is not page:
            return
        runs_moved = page.stamp is None or page.stamp[1:] != stamp[1:]
        page.version, page.stamp = version, stamp
        for ticket in page.rows:
            if ticket.id in changed:
                page.runs[ticket.id] = changed[ticket.id]
                self._redraw(ticket)
        if runs_moved or changed:
            self.post_message(self.RunsMoved(self))

    # ------------------------------------------------------------------ updates

    def update_ticket(self, ticket: Ticket) -> bool:
        """Redraw one ticket's row if it is on the page; True when it was."""
        if self.page is None:
            return False
        for index, row in enumerate(self.page.rows):
            if row.id == ticket.id:
                self.page.rows[index] = ticket
                self._redraw(ticket)
                return True
        return False

    def update_run(self, ticket_id: int, run: Execution) -> None:
        """Show a run's status on its ticket's row, if the row is on the page."""
        if self.page is None or ticket_id not in self.page.runs:
            return
        self.page.runs[ticket_id] = run
        for ticket in self.page.rows:
            if ticket.id == ticket_id:
                self._redraw(ticket)

    def _redraw(self, ticket: Ticket) -> None:
        assert self.page is not None
        cells = self._cells(ticket, self.page.runs.get(ticket.id))
        for (key, _, _), cell in zip(_COLUMNS, cells, strict=True):
            self.update_cell(str(ticket.id), key, cell)

    def has_ticket(self, ticket_id: int) -> bool:
        return self.page is not None and ticket_id in self.page.runs

    @property
    def selected_ticket(self) -> Ticket | None:
        if self.page is None or not self.page.rows:
            return None
        return self.page.rows[min(self.cursor_row, len(self.page.rows) - 1)]

    # ------------------------------------------------------------------ keys

    def action_cursor_down(self) -> None:
        page = self.page
        if page and page.has_next and self.cursor_row >= len(page.rows) - 1:
            self.load("next")
        else:
            super().action_cursor_down()

    def action_cursor_up(self) -> None:
        page = self.page
        if page and page.has_prev and self.cursor_row <= 0:
            self.load("prev")
        else:
            super().action_cursor_up()

    def action_page_down(self) -> None:
        page = self.page
        if page and page.has_next and self.cursor_row >= len(page.rows) - 1:
            self.load("next")
        else:
            super().action_page_down()

    def action_page_up(self) -> None:
        page = self.page
        if page and page.has_prev and self.cursor_row <= 0:
            self.load("prev")
        else:
            super().action_page_up()

    def action_last_page(self) -> None:
        """Jump to the last row of the whole result."""
        self.load("last", cursor_row=PAGE_SIZE)

    def action_first_page(self) -> None:
        """Jump to the first row of the whole result."""
        self.load("first")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.TicketSelected(int(event.row_key.value)))
