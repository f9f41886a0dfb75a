"""One runbook: its definition, its stored versions with diffs, run and edit keys.

Editing happens on a draft file under ``<user data dir>/drafts`` in ``$VISUAL`` or
``$EDITOR``. When the editor exits the draft is validated with :mod:`haloterm.loader`;
while it is invalid nothing is stored, the problems are listed with line and column,
and the draft stays for the operator to fix (``e`` again reopens it). A valid draft is
saved as a new version and removed.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import logging
import os
import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from haloterm.config import data_dir
from haloterm.models import Goto, OnFailure, Runbook, RunRunbook, Step, Trigger
from haloterm.storage import SavedVersion
from haloterm.widgets.row_table import RowTable

if TYPE_CHECKING:
    from haloterm.app import HalotermApp
    from haloterm.services import Services
    from haloterm.storage import StoredRunbook

logger = logging.getLogger(__name__)

_DIM = Style(dim=True)
_BOLD = Style(bold=True)


def draft_path(name: str) -> Path:
    """Where the draft of a runbook being edited is kept."""
    return data_dir() / "drafts" / f"{name}.yaml"


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _trigger_line(trigger: Trigger) -> str:
    if trigger.manual is not None:
        return "manual" if trigger.manual else "manual: off"
    if trigger.on is not None:
        line = f"on {trigger.on}"
        if trigger.match is not None:
            fields = trigger.match.model_dump(exclude_none=True, exclude_defaults=True)
            line += " match " + _short(fields)
        return line
    schedule = trigger.schedule
    assert schedule is not None
    if schedule.cron is not None:
        return f"schedule cron {schedule.cron!r} {schedule.timezone}"
    return f"schedule every {schedule.every:g}s"


def _failure_text(failure: OnFailure) -> str:
    """``continue``, ``goto rollback`` or ``run rollback-demo-service``."""
    if isinstance(failure, Goto):
        return f"goto {failure.goto}"
    if isinstance(failure, RunRunbook):
        return f"run {failure.run}"
    return failure


def _step_lines(index: int, step: Step) -> Text:
    text = Text(f"{index:>3}. ")
    text.append(step.id, style=_BOLD)
    if step.name:
        text.append(f"  {step.name}")
    text.append(f"  [{step.action}]", style=_DIM)
    text.append("\n")
    for key, value in list(step.with_.items())[:5]:
        text.append(f"       {key}: ", style=_DIM)
        text.append(_short(value))
        text.append("\n")
    notes: list[str] = []
    if step.when:
        notes.append(f"when {_short(step.when, 40)}")
    if step.timeout is not None:
        notes.append(f"timeout {step.timeout:g}s")
    if step.retries.count:
        notes.append(f"retries {step.retries.count}")
    if step.on_failure != "abort":
        notes.append(f"on failure {_failure_text(step.on_failure)}")
    if step.only_on_failure:
        notes.append("only on failure")
    if notes:
        text.append("       " + " · ".join(notes) + "\n", style=_DIM)
    return text


def render_definition(stored: StoredRunbook) -> Text:
    """The runbook as the screen shows it: params, triggers, steps and their inputs.

    Every value is plain text (never markup): titles and commands come from files.
    """
    runbook: Runbook = stored.runbook
    text = Text()
    text.append(runbook.display_title, style=_BOLD)
    text.append(f"  {runbook.name} v{stored.version}", style=_DIM)
    text.append(f" · by {stored.author}\n", style=_DIM)
    if runbook.description:
        text.append(runbook.description.strip() + "\n")
    if runbook.tags:
        text.append("tags: " + ", ".join(runbook.tags) + "\n", style=_DIM)

    text.append("\nParams\n", style=_BOLD)
    if not runbook.params:
        text.append("  (none)\n", style=_DIM)
    for name, param in runbook.params.items():
        text.append(f"  {name:<16}", style=_BOLD)
        text.append(f" {param.type}")
        if param.required:
            text.append(" required")
        if param.default is not None:
            text.append(f" default {_short(param.default, 30)}")
        if param.choices:
            text.append(" one of " + ", ".join(param.choices))
        if param.description:
            text.append(f"  {param.description}", style=_DIM)
        text.append("\n")

    text.append("\nTriggers\n", style=_BOLD)
    if not runbook.triggers:
        text.append("  (none)\n", style=_DIM)
    for trigger in runbook.triggers:
        text.append(f"  {_trigger_line(trigger)}\n")

    text.append("\nSteps\n", style=_BOLD)
    for index, step in enumerate(runbook.steps, start=1):
        text.append_text(_step_lines(index, step))
    return text


def render_diff(old: StoredRunbook, new: StoredRunbook) -> Text:
    """A unified diff of two versions' source, coloured, as plain text (no markup)."""
    lines = difflib.unified_diff(
        old.source_text.splitlines(),
        new.source_text.splitlines(),
        fromfile=f"{old.name} v{old.version}",
        tofile=f"{new.name} v{new.version}",
        lineterm="",
    )
    text = Text()
    for line in lines:
        if line.startswith(("+++", "---")):
            style = _BOLD
        elif line.startswith("@@"):
            style = Style(color="cyan")
        elif line.startswith("+"):
            style = Style(color="green")
        elif line.startswith("-"):
            style = Style(color="red")
        else:
            style = Style()
        # The +/- signs stay, so the change reads without colour too.
        text.append(line + "\n", style=style)
    if not text:
        text.append(f"v{old.version} and v{new.version} have the same source.\n")
    return text


class RunbookScreen(Screen[None]):
    """A runbook's definition and versions; run it, diff versions, edit it."""

    CSS_PATH = "runbook.tcss"
    SCREEN_TITLE = "Runbook"
    HELP = """
Definition shows the latest version. In Versions, Space marks a version and `d`
diffs the version under the cursor against it (or against the one before it).
`e` edits a draft in $EDITOR, `t` opens the step editor; either way a change is
stored as a new version only once it is valid.
"""

    BINDINGS = [
        Binding("escape", "back", "Back", id="back", tooltip="Back"),
        Binding("r", "run_runbook", "Run", id="start-run", tooltip="Run this runbook"),
        Binding("e", "edit_runbook", "Edit", id="edit", tooltip="Edit in $EDITOR"),
        Binding("t", "edit_steps", "Steps", id="edit-steps", tooltip="Step editor"),
        Binding("space", "mark_version", "Mark", id="mark", tooltip="Diff base"),
        Binding("d", "diff_versions", "Diff", id="diff", tooltip="Diff versions"),
    ]
    """Keys of the runbook screen."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.runbook_name = name
        self.versions: list[StoredRunbook] = []
        self.marked: int | None = None
        """The version a diff compares against."""

    @property
    def services(self) -> Services:
        return cast("HalotermApp", self.app).services

    def compose(self) -> ComposeResult:
        yield Static(Text(self.runbook_name, style=_BOLD), id="runbook-title")
        yield Static(id="edit-problems")
        with TabbedContent(id="runbook-tabs"):
            with (
                TabPane("Definition", id="definition-tab"),
                VerticalScroll(id="definition-scroll"),
            ):
                yield Static(id="definition")
            with TabPane("Versions", id="versions-tab"):
                yield RowTable(id="versions")
                with VerticalScroll(id="diff-scroll"):
                    yield Static(id="diff")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#versions", DataTable)
        table.add_columns("version", "author", "saved", "hash")
        self.query_one("#edit-problems", Static).display = False
        self.load_versions()

    # ------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="runbook-versions", exit_on_error=False)
    def load_versions(self) -> None:
        """Read every stored version, newest first."""
        versions = self.services.store.runbook_versions(self.runbook_name)
        self.app.call_from_thread(self._show_versions, versions)

    def _show_versions(self, versions: list[StoredRunbook]) -> None:
        self.versions = versions
        if not versions:
            self.query_one("#definition", Static).update(
                Text(f"No runbook named {self.runbook_name!r}.")
            )
            return
        latest = versions[0]
        title = Text(latest.runbook.display_title, style=_BOLD)
        title.append(f"  {latest.name} · {len(versions)} version", style=_DIM)
        title.append("s" if len(versions) != 1 else "", style=_DIM)
        self.query_one("#runbook-title", Static).update(title)
        self.query_one("#definition", Static).update(render_definition(latest))
        table = self.query_one("#versions", DataTable)
        table.clear()
        for stored in versions:
            table.add_row(
                f"v{stored.version}",
                Text(stored.author),
                stored.created_at.strftime("%Y-%m-%d %H:%M"),
                stored.content_hash[:10],
                key=str(stored.version),
            )
        self.refresh_bindings()

    def on_engine_event(self, event: object) -> None:
        """Take one engine event; nothing here changes with runs, so none apply."""

    # ------------------------------------------------------------------ versions

    def _cursor_version(self) -> StoredRunbook | None:
        table = self.query_one("#versions", DataTable)
        if not self.versions or table.cursor_row < 0:
            return None
        return self.versions[min(table.cursor_row, len(self.versions) - 1)]

    def _version(self, number: int) -> StoredRunbook | None:
        return next((v for v in self.versions if v.version == number), None)

    def action_mark_version(self) -> None:
        current = self._cursor_version()
        if current is None:
            return
        self.marked = current.version
        self.notify(f"v{current.version} marked as the diff base.")

    def action_diff_versions(self) -> None:
        """Diff the version under the cursor against the marked (or previous) one."""
        self.query_one(TabbedContent).active = "versions-tab"
        new = self._cursor_version()
        if new is None:
            return
        old = self._version(self.marked) if self.marked is not None else None
        if old is None or old.version == new.version:
            older = [v for v in self.versions if v.version < new.version]
            old = older[0] if older else None
        if old is None:
            self.notify("There is no earlier version to compare with.")
            return
        if old.version > new.version:
            old, new = new, old
        self.show_diff(old, new)

    def show_diff(self, old: StoredRunbook, new: StoredRunbook) -> None:
        """Show the diff from ``old`` to ``new`` under the version table."""
        self.query_one("#diff", Static).update(render_diff(old, new))

    @on(DataTable.RowSelected, "#versions")
    def _version_chosen(self, event: DataTable.RowSelected) -> None:
        self.action_diff_versions()

    # ------------------------------------------------------------------ run

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run_runbook":
            return bool(self.versions) and run_form_available()
        if action in ("mark_version", "diff_versions"):
            return len(self.versions) > 1
        if action in ("edit_runbook", "edit_steps"):
            return bool(self.versions)
        return True

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_run_runbook(self) -> None:
        if not run_form_available():
            return
        from haloterm.screens.run_form import RunForm

        self.app.push_screen(RunForm(self.runbook_name, ticket_id=None))

    # ------------------------------------------------------------------ edit

    def action_edit_steps(self) -> None:
        """Open the in-console step editor on the latest version."""
        from haloterm.screens.step_editor import StepEditorScreen

        if not self.versions:
            return

        def closed(saved: bool | None) -> None:
            if saved:
                self.load_versions()

        self.app.push_screen(StepEditorScreen(self.versions[0]), closed)

    def action_edit_runbook(self) -> None:
        """Open the draft in the editor, then validate and save it."""
        path = draft_path(self.runbook_name)
        if not path.exists():
            if not self.versions:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.versions[0].source_text, encoding="utf-8")
        command = editor_command(path)
        try:
            with self.app.suspend():
                returncode = subprocess.call(command)
        except SuspendNotSupported:
            # Headless (tests, a browser): nothing to hand the terminal to.
            returncode = subprocess.call(command, stdin=subprocess.DEVNULL)
        except OSError as error:
            self.notify(f"Cannot start the editor: {error}", severity="error")
            return
        if returncode != 0:
            self.notify(
                f"The editor exited with status {returncode}; draft kept at {path}.",
                severity="warning",
                markup=False,
            )
            return
        self.save_draft(path)

    @work(thread=True, exclusive=True, group="runbook-save", exit_on_error=False)
    def save_draft(self, path: Path) -> None:
        """Validate the draft; store it as a new version only when it is valid."""
        outcome = store_draft(
            self.services, self.runbook_name, path, same_definition_is_no_change=False
        )
        if isinstance(outcome, str):
            self.app.call_from_thread(self._draft_invalid, path, outcome)
        else:
            self.app.call_from_thread(self._draft_saved, outcome)

    def _draft_invalid(self, path: Path, problems: str) -> None:
        box = self.query_one("#edit-problems", Static)
        text = Text("The draft is not valid; nothing was stored.\n", style=_BOLD)
        text.append(problems.strip() + "\n")
        text.append(f"Draft kept at {path}; press e to fix it.", style=_DIM)
        box.update(text)
        box.display = True
        self.notify("Draft not valid: nothing stored.", severity="error", markup=False)

    def _draft_saved(self, saved: SavedVersion) -> None:
        self.query_one("#edit-problems", Static).display = False
        if saved.created:
            self.notify(f"Saved {saved.name} v{saved.version}.", markup=False)
        else:
            self.notify(f"No change: {saved.name} stays at v{saved.version}.")
        self.load_versions()


def store_draft(
    services: Services, name: str, path: Path, *, same_definition_is_no_change: bool
) -> SavedVersion | str:
    """Validate a draft and store it as a new version of ``name``, then remove it.

    Args:
        services: where to store it.
        name: the runbook the draft edits.
        path: the draft file.
        same_definition_is_no_change: a draft that defines exactly what the latest
            version does stores nothing, even if its text differs (the step editor
            writes its own layout; a comment edited in ``$EDITOR`` is a change).

    Returns:
        What was saved (``created`` False when nothing was), or the problems (one a
        line, with line and column) when the draft is not valid; then nothing is
        stored and the draft stays.
    """
    from haloterm.loader import LoadError, load_runbook_file
    from haloterm.storage.runbooks import definition_of

    try:
        runbook, _text = load_runbook_file(path, registry=services.registry)
        if runbook.name != name:
            return (
                f"{path}:1:1: name: the draft is named {runbook.name!r}; "
                f"keep {name!r} (a new name is a new runbook)"
            )
        latest = services.store.get_runbook(name)
        if (
            same_definition_is_no_change
            and latest is not None
            and definition_of(latest.runbook) == definition_of(runbook)
        ):
            path.unlink(missing_ok=True)
            return SavedVersion(
                name=name,
                version=latest.version,
                created=False,
                content_hash=latest.content_hash,
            )
        saved = services.import_runbook(path)
    except LoadError as error:
        return str(error)
    path.unlink(missing_ok=True)
    return saved


def editor_command(path: Path) -> list[str]:
    """``$VISUAL`` or ``$EDITOR`` split like a shell would (never run by one) + path."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return [*shlex.split(editor), str(path)]


def run_form_available() -> bool:
    """Whether the run form module is there to push."""
    return importlib.util.find_spec("haloterm.screens.run_form") is not None
