"""A ticket: its fields, history, linked runs live, and the runbooks it calls for."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Static

from haloterm.automation.match import RunbookMatch, matching_runbooks, trigger_params
from haloterm.engine.events import Event, ExecutionChanged, TicketChanged
from haloterm.engine.templates import TemplateError
from haloterm.models import PRIORITIES, Execution, Ticket, TicketStatus
from haloterm.screens.dialogs import ChoiceScreen, CommentScreen
from haloterm.widgets.footer import KeyFooter
from haloterm.widgets.row_table import RowTable
from haloterm.widgets.status import status_text
from haloterm.widgets.ticket_table import age

if TYPE_CHECKING:
    from haloterm.app import HalotermApp
    from haloterm.storage import Store, TicketEvent

logger = logging.getLogger(__name__)

LABEL_WIDTH = 16
"""Field names longer than this are cut with an ellipsis; values wrap beside them."""


class Hanging(Static):
    """Rows of a head and a text; a long text wraps under its own start, not under
    the head (an unbroken one, a URL, folds). The text is plain, never markup."""

    def __init__(self, *, id: str, empty: str = "") -> None:
        super().__init__("", id=id, markup=False)
        self.empty = empty
        self._rows: list[tuple[Text, Text]] = []

    @property
    def rows(self) -> list[tuple[Text, Text]]:
        return self._rows

    @rows.setter
    def rows(self, rows: list[tuple[Text, Text]]) -> None:
        self._rows = rows
        self.refresh(layout=True)

    def on_resize(self) -> None:
        self.refresh(layout=True)

    def render(self) -> Text:
        if not self._rows:
            return Text(self.empty, style="dim")
        head_width = max(head.cell_len for head, _ in self._rows) + 1
        width = max(8, self.content_size.width - head_width)
        text = Text()
        for head, body in self._rows:
            lines = body.wrap(self.app.console, width, overflow="fold")
            for index, line in enumerate(lines):
                if index:
                    text.append(" " * head_width)
                else:
                    text.append_text(head)
                    text.append(" " * (head_width - head.cell_len))
                text.append_text(line)
                text.append("\n")
        text.rstrip()
        return text


@dataclass
class TicketView:
    """Everything the screen shows, read in one go off the loop."""

    ticket: Ticket
    history: list[TicketEvent]
    runs: list[Execution]
    suggestions: list[Suggestion]


@dataclass
class Suggestion:
    """A runbook offered for the ticket: fitting ones first, with prefilled params."""

    name: str
    title: str
    matched: bool
    params: dict[str, Any]


class TicketScreen(Screen[None]):
    """One ticket in full; ``r`` runs the selected runbook against it."""

    CSS_PATH = "ticket.tcss"
    SCREEN_TITLE = "Ticket"
    HELP = (
        "Runbooks whose trigger fits this ticket come first, marked ★, with their "
        "params filled in from the ticket. Enter on a run opens it live."
    )
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("r", "run_selected", "Run", id="start-run", tooltip="Run the runbook"),
        Binding("t", "change_status", "Status", id="status", tooltip="Change status"),
        Binding("p", "change_priority", "Priority", id="priority"),
        Binding("n", "add_note", "Note", id="note", tooltip="Add a note"),
    ]

    app: HalotermApp

    def __init__(self, ticket_id: int) -> None:
        super().__init__()
        self.ticket_id = ticket_id
        self.view: TicketView | None = None
        self.keys_ready = False
        """False until the ticket is first shown; the app holds keys until then."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Ticket #{self.ticket_id}", id="ticket-head", markup=False)
        with Horizontal(id="ticket-body"):
            with VerticalScroll(id="ticket-detail"):
                yield Hanging(id="ticket-fields")
                yield Static("", id="ticket-description", markup=False)
                yield Label("History", classes="section")
                yield Hanging(id="ticket-history", empty="(none)")
            with Vertical(id="ticket-side"):
                yield Label("Runbooks  (r run)", classes="section")
                yield RowTable(id="suggested")
                yield Label("Runs  (Enter open)", classes="section")
                yield RowTable(id="runs")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#suggested", DataTable).add_columns("Runbook (★ fits)")
        self.query_one("#runs", DataTable).add_columns("#", "Runbook", "Status")
        self.query_one("#suggested", DataTable).focus()
        self.load_ticket()

    # ------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="ticket-view", exit_on_error=False)
    def load_ticket(self) -> None:
        """Read the ticket, its history, runs and runbooks in a thread."""
        view: TicketView | None = None
        try:
            view = self._read()
        finally:
            self.app.call_from_thread(self._loaded, view)

    def _loaded(self, view: TicketView | None) -> None:
        if view is not None:
            self._show(view)
        if not self.keys_ready:
            self.keys_ready = True
            self.app.replay_keys()

    def _read(self) -> TicketView | None:
        store = self.app.services.store
        ticket = store.get_ticket(self.ticket_id)
        if ticket is None:
            self.app.call_from_thread(
                self.notify, f"Ticket #{self.ticket_id} is gone.", severity="error"
            )
            return None
        history = store.ticket_history(self.ticket_id)
        runs = store.list_executions(ticket_id=self.ticket_id, limit=50)
        return TicketView(ticket, history, runs, suggestions_for(store, ticket))

    def _show(self, view: TicketView) -> None:
        self.view = view
        ticket = view.ticket
        self.sub_title = f"#{ticket.id}"
        self.query_one("#ticket-head", Static).update(_head(ticket))
        self.query_one("#ticket-fields", Hanging).rows = _fields(ticket, self.app)
        description = ticket.description or "(no description)"
        self.query_one("#ticket-description", Static).update(Text(description))
        self.query_one("#ticket-history", Hanging).rows = _history(view.history)
        self._show_suggestions(view.suggestions)
        self._show_runs(view.runs)

    def _show_suggestions(self, suggestions: list[Suggestion]) -> None:
        table = self.query_one("#suggested", DataTable)
        keep = table.cursor_row
        table.clear()
        for item in suggestions:
            title = Text("★ " if item.matched else "  ", style="bold")
            title.append(item.title)
            table.add_row(title, key=item.name)
        if suggestions:
            table.move_cursor(row=min(keep, len(suggestions) - 1), animate=False)

    def _show_runs(self, runs: list[Execution]) -> None:
        table = self.query_one("#runs", DataTable)
        keep = table.cursor_row
        table.clear()
        for run in runs:
            table.add_row(
                str(run.id),
                Text(run.runbook),
                status_text(run.status.value),
                key=str(run.id),
            )
        if runs:
            table.move_cursor(row=min(keep, len(runs) - 1), animate=False)

    # ------------------------------------------------------------------ live

    def on_store_changed(self) -> None:
        """Something was committed, maybe by another process (called by the app)."""
        if self.view is not None:
            self._check_changed(self.view)

    @work(thread=True, exclusive=True, group="ticket-check", exit_on_error=False)
    def _check_changed(self, view: TicketView) -> None:
        """Re-read the ticket only when it or one of its runs changed."""
        store = self.app.services.store
        ticket = store.get_ticket(self.ticket_id)
        runs = store.list_executions(ticket_id=self.ticket_id, limit=50)
        if ticket != view.ticket or runs != view.runs:
            self.app.call_from_thread(self.load_ticket)

    def on_engine_event(self, event: Event) -> None:
        """Re-read the ticket when it or one of its runs changes (called by the app)."""
        if isinstance(event, TicketChanged) and event.ticket_id == self.ticket_id:
            self.load_ticket()
        elif isinstance(event, ExecutionChanged) and event.ticket_id == self.ticket_id:
            self.load_ticket()

    # ------------------------------------------------------------------ actions

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.data_table.id == "runs" and event.row_key.value is not None:
            from haloterm.screens.run import RunScreen

            self.app.push_screen(RunScreen(int(event.row_key.value)))
        elif event.data_table.id == "suggested":
            self.action_run_selected()

    @property
    def selected_suggestion(self) -> Suggestion | None:
        if self.view is None or not self.view.suggestions:
            return None
        row = self.query_one("#suggested", DataTable).cursor_row
        return self.view.suggestions[min(row, len(self.view.suggestions) - 1)]

    def action_run_selected(self) -> None:
        """Open the run form for the selected runbook, params filled from the ticket."""
        from haloterm.screens.run_form import RunForm

        item = self.selected_suggestion
        if item is not None:
            self.app.push_screen(
                RunForm(item.name, ticket_id=self.ticket_id, params=item.params)
            )

    def action_change_status(self) -> None:
        """Pick a new status."""
        current = self.view.ticket.status if self.view else None
        choices = [status.value for status in TicketStatus]
        self.app.push_screen(
            ChoiceScreen("Status", choices, current=current), self._set_status
        )

    def action_change_priority(self) -> None:
        """Pick a new priority."""
        current = self.view.ticket.priority if self.view else None
        self.app.push_screen(
            ChoiceScreen("Priority", list(PRIORITIES), current=current),
            self._set_priority,
        )

    def action_add_note(self) -> None:
        """Add a note to the ticket's history."""
        self.app.push_screen(CommentScreen("Add a note", required=True), self._add_note)

    def _set_status(self, status: str | None) -> None:
        if status:
            self._update(status=status)

    def _set_priority(self, priority: str | None) -> None:
        if priority:
            self._update(priority=priority)

    def _add_note(self, note: str | None) -> None:
        if note:
            self._update(note=note)

    @work(thread=True, group="ticket-update", exit_on_error=False)
    def _update(self, **changes: Any) -> None:
        store = self.app.services.store
        store.update_ticket(self.ticket_id, actor=self.app.operator, **changes)
        self.app.call_from_thread(self.load_ticket)


def suggestions_for(store: Store, ticket: Ticket) -> list[Suggestion]:
    """The enabled runbooks for a ticket: those whose rules fit it first, with
    params filled from it, then the others (reads the store: call in a thread)."""
    runbooks = []
    for summary in store.list_runbooks():
        stored = store.get_runbook(summary.name)
        if stored is not None and summary.enabled:
            runbooks.append(stored.runbook)
    return _suggestions(ticket, matching_runbooks(ticket, runbooks), runbooks)


def _suggestions(
    ticket: Ticket, matches: list[RunbookMatch], runbooks: list[Any]
) -> list[Suggestion]:
    found: list[Suggestion] = []
    for match in matches:
        try:
            params = trigger_params(match.trigger, ticket)
        except TemplateError as exc:
            logger.warning("params of %s not prefilled: %s", match.runbook.name, exc)
            params = {}
        runbook = match.runbook
        found.append(Suggestion(runbook.name, runbook.display_title, True, params))
    matched = {m.runbook.name for m in matches}
    for runbook in runbooks:
        if runbook.name not in matched:
            found.append(Suggestion(runbook.name, runbook.display_title, False, {}))
    return found


def _head(ticket: Ticket) -> Text:
    glyph = "▲ " if ticket.priority == "P1" else ""
    head = Text(f"{glyph}{ticket.priority}", style="bold reverse" if glyph else "bold")
    head.append(f"  {ticket.status.replace('_', ' ')}  #{ticket.id}  ")
    head.append(ticket.title, style="bold")
    return head


def _fields(ticket: Ticket, app: HalotermApp) -> list[tuple[Text, Text]]:
    now = app.clock()
    rows: list[tuple[str, str]] = [
        ("Type", ticket.type),
        ("Category", ticket.category or "-"),
        (
            "Source",
            ticket.source
            + (f" ({ticket.external_key})" if ticket.external_key else ""),
        ),
        (
            "Created",
            f"{ticket.created_at:%Y-%m-%d %H:%M}Z ({age(ticket.created_at, now)} ago)",
        ),
        ("Updated", f"{ticket.updated_at:%Y-%m-%d %H:%M}Z"),
    ]
    rows += [(str(key), str(value)) for key, value in ticket.fields.items()]
    width = min(LABEL_WIDTH, max(len(label) for label, _ in rows) + 1)
    labelled = []
    for label, value in rows:
        head = Text(f"{label}:", style="bold", no_wrap=True, overflow="ellipsis")
        head.truncate(width, overflow="ellipsis")
        head.align("right", width)
        labelled.append((head, Text(value)))
    return labelled


def _history(events: list[TicketEvent]) -> list[tuple[Text, Text]]:
    rows = []
    for event in events:
        line = Text()
        line.append(f"{event.actor} ", style="bold")
        line.append(event.kind.replace("_", " "))
        detail = _event_detail(event)
        if detail:
            line.append(f": {detail}")
        rows.append((Text(f"{event.at:%m-%d %H:%M}", style="dim"), line))
    return rows


def _event_detail(event: TicketEvent) -> str:
    data = event.data
    if "note" in data:
        return str(data["note"])
    if "to" in data:
        return f"{data.get('from', '?')} → {data['to']}"
    return ", ".join(f"{k}={v}" for k, v in data.items() if k != "title")
