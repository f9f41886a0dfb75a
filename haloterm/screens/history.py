"""History: past and present runs, filterable and paged, and the audit trail.

The filter line takes ``runbook:<name> status:<status> ticket:<id> since:<date>
until:<date>`` terms (dates as ``YYYY-MM-DD`` or full ISO times, UTC). Rows load a page
at a time in thread workers; ``e`` writes what the current tab shows (every row that
matches, not only the loaded ones) to a CSV or JSON file under the data directory.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    Static,
    TabbedContent,
    TabPane,
)

from haloterm.config import data_dir
from haloterm.engine.events import Event, ExecutionChanged
from haloterm.engine.output import strip_ansi
from haloterm.models import Execution
from haloterm.widgets.status import elapsed, format_duration, status_text

if TYPE_CHECKING:
    from haloterm.app import HalotermApp
    from haloterm.services import Services
    from haloterm.storage import AuditRecord, Store

logger = logging.getLogger(__name__)

PAGE = 100
"""Rows read per page."""
EXPORT_LIMIT = 100_000
"""Most rows one export writes."""

ExportFormat = Literal["csv", "json"]


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


def execution_record(execution: Execution) -> dict[str, Any]:
    """One run as an export row: plain values, escapes stripped."""
    seconds = elapsed(execution.started_at, execution.finished_at, execution.created_at)
    return {
        "id": execution.id,
        "runbook": execution.runbook,
        "version": execution.version,
        "status": str(execution.status),
        "trigger": execution.trigger,
        "operator": execution.operator,
        "ticket_id": execution.ticket_id,
        "parent_id": execution.parent_id,
        "created_at": execution.created_at.isoformat(),
        "started_at": execution.started_at.isoformat() if execution.started_at else "",
        "finished_at": (
            execution.finished_at.isoformat() if execution.finished_at else ""
        ),
        "duration_s": (
            round(seconds, 3) if seconds is not None and execution.finished_at else ""
        ),
        "reason": strip_ansi(execution.reason or ""),
    }


def _plain(value: Any) -> Any:
    """A JSON value with every escape sequence stripped from its strings."""
    if isinstance(value, str):
        return strip_ansi(value)
    if isinstance(value, dict):
        return {strip_ansi(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def audit_record(record: AuditRecord) -> dict[str, Any]:
    """One audit entry as an export row: plain values, escapes stripped."""
    return {
        "id": record.id,
        "at": record.at.isoformat(),
        "actor": strip_ansi(record.actor),
        "action": strip_ansi(record.action),
        "target_type": record.target_type,
        "target_id": strip_ansi(record.target_id),
        "detail": json.dumps(_plain(record.detail), sort_keys=True),
        "origin": strip_ansi(record.origin or ""),
    }


def write_export(rows: Sequence[dict[str, Any]], path: Path, fmt: ExportFormat) -> Path:
    """Write rows as CSV (header from the first row) or a JSON array; returns path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps(list(rows), indent=2) + "\n", encoding="utf-8")
        return path
    with path.open("w", newline="", encoding="utf-8") as handle:
        fields = list(rows[0]) if rows else ["id"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def collect_runs(store: Store, run_filter: RunFilter) -> list[dict[str, Any]]:
    """Every run matching the filter, newest first, as export rows."""
    rows: list[dict[str, Any]] = []
    before: int | None = None
    while len(rows) < EXPORT_LIMIT:
        page = store.list_executions(
            **run_filter.kwargs(), limit=PAGE * 10, before_id=before
        )
        rows.extend(execution_record(e) for e in page)
        if len(page) < PAGE * 10:
            break
        before = page[-1].id
    return rows[:EXPORT_LIMIT]


def collect_audit(store: Store) -> list[dict[str, Any]]:
    """The audit trail, newest first, as export rows."""
    rows: list[dict[str, Any]] = []
    before: int | None = None
    while len(rows) < EXPORT_LIMIT:
        page = store.list_audit(limit=PAGE * 10, before_id=before)
        rows.extend(audit_record(r) for r in page)
        if len(page) < PAGE * 10:
            break
        before = page[-1].id
    return rows[:EXPORT_LIMIT]


class ExportScreen(ModalScreen[ExportFormat | None]):
    """Ask which file format to export to."""

    CSS_PATH = "history.tcss"
    BINDINGS = [
        Binding("c", "pick('csv')", "CSV", id="export-csv"),
        Binding("j", "pick('json')", "JSON", id="export-json"),
        Binding("escape", "pick('')", "Cancel", id="export-cancel"),
    ]

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog"):
            yield Label(f"Export {self.what} as:", markup=False)
            with Horizontal():
                yield Button("CSV (c)", id="csv", variant="primary")
                yield Button("JSON (j)", id="json")
                yield Button("Cancel (Esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_pick(event.button.id or "")

    def action_pick(self, fmt: str) -> None:
        self.dismiss(cast(ExportFormat, fmt) if fmt in ("csv", "json") else None)


class HistoryScreen(Screen[None]):
    """Runs, newest first, with filters; and the audit trail in a second tab."""

    CSS_PATH = "history.tcss"
    AUTO_FOCUS = "#runs"
    SCREEN_TITLE = "History"
    HELP = """
Filter runs with terms like `runbook:restart-web status:failed ticket:42
since:2026-03-01 until:2026-03-02`. Enter on a run opens it. More rows load as the
cursor reaches the bottom. `e` exports the current tab to CSV or JSON.
"""

    BINDINGS = [
        Binding("escape", "back", "Back", id="back", tooltip="Back"),
        Binding("slash", "focus_filter", "Filter", id="filter", tooltip="Filter runs"),
        Binding("e", "export", "Export", id="export", tooltip="Save as CSV or JSON"),
        Binding("r", "reload", "Reload", id="reload", tooltip="Read again"),
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
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
                yield Static(id="runs-status")
            with TabPane("Audit", id="audit-tab"):
                yield DataTable(id="audit", cursor_type="row", zebra_stripes=True)
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
            detail = json.dumps(_plain(record.detail)) if record.detail else ""
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


def export_dir() -> Path:
    """Where exports go: ``<user data dir>/exports``."""
    return data_dir() / "exports"


def free_path(path: Path) -> Path:
    """``path``, or ``name-2.ext``, ``name-3.ext``... when it is taken."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate
