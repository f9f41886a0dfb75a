"""Exporting the history: runs or audit records as CSV or JSON files, escapes stripped.

Exports go to ``<user data dir>/exports`` and never overwrite an earlier file. Every
text value passes through :func:`haloterm.engine.output.strip_ansi` on the way out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from haloterm.config import data_dir
from haloterm.engine.output import strip_ansi
from haloterm.models import Execution
from haloterm.widgets.status import elapsed

if TYPE_CHECKING:
    from haloterm.storage import AuditRecord, Store

ExportFormat = Literal["csv", "json"]
EXPORT_LIMIT = 100_000
"""Most rows one export writes."""
EXPORT_PAGE = 1000
"""Rows read per query while exporting."""


class RunQuery(Protocol):
    """Which runs to export: anything with ``Store.list_executions`` filters."""

    def kwargs(self) -> dict[str, Any]: ...


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


def plain_json(value: Any) -> Any:
    """A JSON value with every escape sequence stripped from its strings."""
    if isinstance(value, str):
        return strip_ansi(value)
    if isinstance(value, dict):
        return {strip_ansi(str(k)): plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_json(v) for v in value]
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
        "detail": json.dumps(plain_json(record.detail), sort_keys=True),
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


def collect_runs(store: Store, run_filter: RunQuery) -> list[dict[str, Any]]:
    """Every run matching the filter, newest first, as export rows."""
    rows: list[dict[str, Any]] = []
    before: int | None = None
    while len(rows) < EXPORT_LIMIT:
        page = store.list_executions(
            **run_filter.kwargs(), limit=EXPORT_PAGE, before_id=before
        )
        rows.extend(execution_record(e) for e in page)
        if len(page) < EXPORT_PAGE:
            break
        before = page[-1].id
    return rows[:EXPORT_LIMIT]


def collect_audit(store: Store) -> list[dict[str, Any]]:
    """The audit trail, newest first, as export rows."""
    rows: list[dict[str, Any]] = []
    before: int | None = None
    while len(rows) < EXPORT_LIMIT:
        page = store.list_audit(limit=EXPORT_PAGE, before_id=before)
        rows.extend(audit_record(r) for r in page)
        if len(page) < EXPORT_PAGE:
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
