"""History: past and present runs, filterable and paged, and the audit trail.

The filter line takes ``runbook:<name> status:<status> ticket:<id> since:<date>
until:<date>`` terms (dates as ``YYYY-MM-DD`` or full ISO times, UTC). Rows load a page
at a time in thread workers; ``e`` writes what the current tab shows (every row that
matches, not only the loaded ones) to a CSV or JSON file under the data directory.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Input,
    Static,
    TabbedContent,
    TabPane,
)

from haloterm.engine.events import Event, ExecutionChanged
from haloterm.engine.output import strip_ansi
from haloterm.models import Execution
from haloterm.screens.export import (
    ExportFormat,
    ExportScreen,
    collect_audit,
    collect_runs,
    export_dir,
    free_path,
    plain_json,
    write_export,
)
from haloterm.widgets.row_table import RowTable
from haloterm.widgets.status import elapsed, format_duration, status_text

if TYPE_CHECKING:
    from haloterm.app import HalotermApp
    from haloterm.services import Services
    from haloterm.storage import AuditRecord

logger = logging.getLogger(__name__)

PAGE = 100
"""Rows read per page."""


class FilterError(ValueError):
    """A filter term that does not parse; the message says which."""


@dataclass(frozen=True)
class RunFilter:
    """Which executions the history lists."""

    runbook: str | None = None
    status: tuple[str, ...] | None = None
    """Any of these statuses (``status:failed,cancelled``)."""
    ticket_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Store.list_executions``."""
        return {
            "runbook": self.runbook,
            "status": list(self.status) if self.status else None,
            "ticket_id": self.ticket_id,
            "since": self.since,
            "until": self.until,
        }


def _parse_when(value: str, *, end: bool) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(f"not a date: {value!r} (use YYYY-MM-DD)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if end and len(value) == 10:
        # A bare date as the upper bound includes that whole day.
        when += timedelta(days=1)
    return when


def parse_run_filter(text: str) -> RunFilter:
    """Read ``runbook:x status:y ticket:n since:date until:date`` terms.

    Raises:
        FilterError: an unknown key, a term without ``:``, or a bad number or date.
    """
    values: dict[str, Any] = {}
    for term in text.split():
        key, sep, value = term.partition(":")
        if not sep or not value:
            raise FilterError(f"{term!r}: use key:value (runbook, status, ticket, ...)")
        key = key.lower()
        if key == "runbook":
            values[key] = value
        elif key == "status":
            values[key] = tuple(part for part in value.split(",") if part)
        elif key == "ticket":
            if not value.lstrip("#").isdigit():
                raise FilterError(f"ticket:{value}: not a ticket number")
            values["ticket_id"] = int(value.lstrip("#"))
        elif key in ("since", "until"):
            values[key] = _parse_when(value, end=key == "until")
        else:
            raise FilterError(f"unknown filter {key!r}")
    return RunFilter(**values)


_RUN_COLUMNS = (
    "run", "status", "runbook", "ver", "started", "took", "reason",
    "ticket", "operator", "trigger",
)  # fmt: skip


def _short_reason(reason: str | None, width: int = 48) -> str:
    text = strip_ansi((reason or "").split("\n")[0])
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(value: datetime | None, *, short: bool = False) -> str:
    shape = "%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S"
    return value.astimezone(UTC).strftime(shape) if value else ""


class HistoryScreen(Screen[None]):
    """Runs, newest first, with filters; and the audit trail in a second tab."""

    CSS_PATH = "history.tcss"
    AUTO_FOCUS = "#runs"
    SCREEN_TITLE = "History"
    HELP = """
Filter runs with terms like `runbook:restart-web status:failed ticket:42
since:2026-03-01 until:2026-03-02`. Enter on a run opens it. More rows load as the
cursor reaches the bottom. `t` switches between the runs and the audit trail; `e`
exports the current tab to CSV or JSON.
"""

    BINDINGS = [
        Binding("escape", "back", "Back", id="back", tooltip="Back"),
        Binding("slash", "focus_filter", "Filter", id="filter", tooltip="Filter runs"),
        Binding("e", "export", "Export", id="export", tooltip="Save as CSV or JSON"),
        Binding("r", "reload", "Reload", id="reload", tooltip="Read again"),
        Binding("t", "other_tab", "Runs/Audit", id="other-tab", tooltip="Switch tab"),
    ]
    """Keys of the history screen."""

    def __init__(self) -> None:
        super().__init__()
        self.run_filter = RunFilter()
        self.runs: list[Execution] = []
        self.more_runs = False
        self.audit: list[AuditRecord] = []
        self.more_audit = False

    @property
    def services(self) -> Services:
        return cast("HalotermApp", self.app).services

    def compose(self) -> ComposeResult:
        with TabbedContent(id="history-tabs"):
            with TabPane("Runs", id="runs-tab"):
                yield Input(
                    placeholder="runbook:<name> status:<status> ticket:<id> "
                    "since:<date> until:<date>",
                    id="run-filter",
                )
                yield RowTable(id="runs", zebra_stripes=True)
                yield Static(id="runs-status")
            with TabPane("Audit", id="audit-tab"):
                yield RowTable(id="audit", zebra_stripes=True)
                yield Static(id="audit-status")
        yield Footer()

    def on_mount(self) -> None:
        runs = self.query_one("#runs", DataTable)
        for column in _RUN_COLUMNS:
            runs.add_column(column, key=column)
        audit = self.query_one("#audit", DataTable)
        audit.add_columns("id", "at", "actor", "action", "target", "detail")
        runs.focus()
        self.load_runs(self.run_filter, None)
        self.load_audit(None)

    # ------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="history-runs", exit_on_error=False)
    def load_runs(self, run_filter: RunFilter, before: int | None) -> None:
        """Read one page of runs (after ``before`` when given)."""
        page = self.services.store.list_executions(
            **run_filter.kwargs(), limit=PAGE, before_id=before
        )
        self.app.call_from_thread(self._show_runs, run_filter, before, page)

    def _show_runs(
        self, run_filter: RunFilter, before: int | None, page: list[Execution]
    ) -> None:
        if run_filter != self.run_filter:
            return
        table = self.query_one("#runs", DataTable)
        if before is None:
            table.clear()
            self.runs = []
        now = self._now()
        variables = self.app.theme_variables
        for execution in page:
            seconds = elapsed(execution.started_at, execution.finished_at, now)
            table.add_row(
                str(execution.id),
                status_text(execution.status, variables=variables),
                Text(execution.runbook),
                f"v{execution.version}",
                _when(execution.started_at or execution.created_at, short=True),
                format_duration(seconds) if seconds is not None else "",
                Text(_short_reason(execution.reason)),
                f"#{execution.ticket_id}" if execution.ticket_id else "",
                Text(execution.operator),
                Text(execution.trigger),
                key=str(execution.id),
            )
        self.runs.extend(page)
        self.more_runs = len(page) == PAGE
        more = " · more below" if self.more_runs else ""
        self.query_one("#runs-status", Static).update(
            Text(f"{len(self.runs)} runs shown{more}")
        )

    @work(thread=True, exclusive=True, group="history-audit", exit_on_error=False)
    def load_audit(self, before: int | None) -> None:
        """Read one page of the audit trail."""
        page = self.services.store.list_audit(limit=PAGE, before_id=before)
        self.app.call_from_thread(self._show_audit, before, page)

    def _show_audit(self, before: int | None, page: list[AuditRecord]) -> None:
        table = self.query_one("#audit", DataTable)
        if before is None:
            table.clear()
            self.audit = []
        for record in page:
            detail = json.dumps(plain_json(record.detail)) if record.detail else ""
            table.add_row(
                str(record.id),
                _when(record.at),
                Text(record.actor),
                Text(record.action),
                Text(f"{record.target_type} {record.target_id}"),
                Text(detail[:200]),
                key=str(record.id),
            )
        self.audit.extend(page)
        self.more_audit = len(page) == PAGE
        more = " · more below" if self.more_audit else ""
        self.query_one("#audit-status", Static).update(
            Text(f"{len(self.audit)} entries shown{more}")
        )

    def _now(self) -> datetime:
        clock = getattr(self.app, "clock", None) or self.services.clock
        return cast(datetime, clock())

    # ------------------------------------------------------------------ events

    def on_engine_event(self, event: Event) -> None:
        """Take one engine event; the app calls this for every event it forwards.

        A run already listed gets its new status and reason in place; a new run
        re-reads the first page, unless more pages are loaded (``r`` does it then).
        """
        if not isinstance(event, ExecutionChanged):
            return
        table = self.query_one("#runs", DataTable)
        key = str(event.execution_id)
        if key in table.rows:
            status = status_text(event.status, variables=self.app.theme_variables)
            table.update_cell(key, "status", status)
            table.update_cell(key, "reason", Text(_short_reason(event.reason)))
        elif len(self.runs) <= PAGE and (
            not self.runs or event.execution_id > self.runs[0].id
        ):
            self.load_runs(self.run_filter, None)

    def on_store_changed(self) -> None:
        """Runs of other processes start and end without an event here: re-read
        the first page when it is all that is shown (called by the app)."""
        if len(self.runs) <= PAGE:
            self._check_runs(self.run_filter, list(self.runs))

    @work(thread=True, exclusive=True, group="history-check", exit_on_error=False)
    def _check_runs(self, run_filter: RunFilter, shown: list[Execution]) -> None:
        page = self.services.store.list_executions(**run_filter.kwargs(), limit=PAGE)
        if page != shown:
            self.app.call_from_thread(self._replace_runs, run_filter, page)

    def _replace_runs(self, run_filter: RunFilter, page: list[Execution]) -> None:
        table = self.query_one("#runs", DataTable)
        keep = table.cursor_row
        self._show_runs(run_filter, None, page)
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1), animate=False)

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        table = "#audit" if event.pane.id == "audit-tab" else "#runs"
        self.query_one(table, DataTable).focus()

    @on(Input.Submitted, "#run-filter")
    def _filter(self, event: Input.Submitted) -> None:
        try:
            run_filter = parse_run_filter(event.value)
        except FilterError as error:
            self.notify(str(error), title="Filter", severity="error", markup=False)
            return
        self.run_filter = run_filter
        self.load_runs(run_filter, None)
        self.query_one("#runs", DataTable).focus()

    @on(DataTable.RowHighlighted, "#runs")
    def _runs_cursor(self, event: DataTable.RowHighlighted) -> None:
        table = event.data_table
        if self.more_runs and event.cursor_row >= table.row_count - 1 and self.runs:
            self.more_runs = False
            self.load_runs(self.run_filter, self.runs[-1].id)

    @on(DataTable.RowHighlighted, "#audit")
    def _audit_cursor(self, event: DataTable.RowHighlighted) -> None:
        table = event.data_table
        if self.more_audit and event.cursor_row >= table.row_count - 1 and self.audit:
            self.more_audit = False
            self.load_audit(self.audit[-1].id)

    @on(DataTable.RowSelected, "#runs")
    def _open_run(self, event: DataTable.RowSelected) -> None:
        from haloterm.screens.run import RunScreen

        if event.row_key.value is not None:
            self.app.push_screen(RunScreen(int(event.row_key.value)))

    # ------------------------------------------------------------------ actions

    def action_other_tab(self) -> None:
        """Show the audit trail from the runs, and the runs from the audit trail."""
        tabs = self.query_one(TabbedContent)
        tabs.active = "runs-tab" if self._active_tab() == "audit-tab" else "audit-tab"

    def _active_tab(self) -> str:
        return self.query_one(TabbedContent).active or "runs-tab"

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_focus_filter(self) -> None:
        self.query_one(TabbedContent).active = "runs-tab"
        self.query_one("#run-filter", Input).focus()

    def action_reload(self) -> None:
        self.load_runs(self.run_filter, None)
        self.load_audit(None)

    def action_export(self) -> None:
        what = "the audit trail" if self._active_tab() == "audit-tab" else "these runs"

        def chosen(fmt: ExportFormat | None) -> None:
            if fmt is not None:
                self.export(self._active_tab(), self.run_filter, fmt)

        self.app.push_screen(ExportScreen(what), chosen)

    @work(thread=True, group="history-export", exit_on_error=False)
    def export(self, tab: str, run_filter: RunFilter, fmt: ExportFormat) -> Path:
        """Write every row of the tab (runs matching the filter, or the audit)."""
        store = self.services.store
        if tab == "audit-tab":
            kind, rows = "audit", collect_audit(store)
        else:
            kind, rows = "runs", collect_runs(store, run_filter)
        stamp = self._now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = free_path(export_dir() / f"{kind}-{stamp}.{fmt}")
        write_export(rows, path, fmt)
        logger.info("exported %d %s rows to %s", len(rows), kind, path)
        self.app.call_from_thread(
            self.notify,
            f"{len(rows)} rows written to {path}",
            title="Exported",
            markup=False,
        )
        return path
