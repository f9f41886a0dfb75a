"""Editing a runbook's steps in the console: add, remove, reorder, fill in inputs.

The editor works on the runbook's YAML source (ruamel round-trip), so comments and
layout outside the changed steps survive. Saving writes the result to the runbook's
draft file and goes through the same validation as ``$EDITOR`` edits: nothing is stored
while the runbook is invalid, and the problems are listed with line and column.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any, cast

from rich.style import Style
from rich.text import Text
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static

from haloterm.widgets.row_table import RowTable

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

    from haloterm.app import HalotermApp
    from haloterm.services import Services
    from haloterm.storage import StoredRunbook

_DIM = Style(dim=True)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 88
    return yaml


def parse_value(text: str, field: FieldInfo) -> Any:
    """A typed value for an input field from what the operator typed.

    Text fields keep the text as it is (never read as YAML, so ``NO`` stays ``NO``);
    other fields are read as YAML flow (``[200, 204]``, ``{a: 1}``, ``30s``, ``true``).

    Raises:
        ValueError: the text is not valid YAML for a non-text field.
    """
    if field.annotation in (str, str | None):
        return text
    try:
        return _yaml().load(text)
    except YAMLError as error:
        raise ValueError(str(error).splitlines()[0]) from None


def show_value(value: Any) -> str:
    """A value as the operator edits it: text as is, anything else as JSON (flow)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def default_text(field: FieldInfo) -> str:
    """``default <value>`` for an optional field, empty for a required one."""
    if field.is_required():
        return "required"
    default = field.get_default(call_default_factory=True)
    return f"default {show_value(default)}" if default not in (None, "", [], {}) else ""


class AddStepScreen(ModalScreen[tuple[str, str] | None]):
    """Ask for a new step's id and action."""

    CSS_PATH = "step_editor.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="add-step-cancel")]

    def __init__(self, actions: list[str], taken: set[str]) -> None:
        super().__init__()
        self.actions = actions
        self.taken = taken

    def compose(self) -> ComposeResult:
        with Vertical(id="add-step"):
            yield Label("New step", markup=False)
            yield Input(placeholder="step id, e.g. notify-team", id="step-id")
            yield Select(
                [(name, name) for name in self.actions],
                prompt="action",
                id="step-action",
            )
            yield Static("", id="add-problem", markup=False)
            yield Button("Add", id="add", variant="primary")

    @on(Input.Submitted, "#step-id")
    @on(Button.Pressed, "#add")
    def _add(self) -> None:
        step_id = self.query_one("#step-id", Input).value.strip()
        action = self.query_one("#step-action", Select).value
        problem = ""
        if not step_id:
            problem = "A step needs an id."
        elif step_id in self.taken:
            problem = f"There is already a step {step_id!r}."
        elif not isinstance(action, str):
            problem = "Pick an action."
        if problem:
            self.query_one("#add-problem", Static).update(problem)
            return
        self.dismiss((step_id, cast(str, action)))

    def action_cancel(self) -> None:
        self.dismiss(None)


class StepInputsScreen(ModalScreen[dict[str, Any] | None]):
    """Fill one step's ``with`` block, one field per input of its action."""

    CSS_PATH = "step_editor.tcss"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="inputs-cancel"),
        Binding("ctrl+s", "done", "Done", id="inputs-done"),
    ]

    def __init__(
        self, step_id: str, action: str, fields: dict[str, FieldInfo], values: Any
    ) -> None:
        super().__init__()
        self.step_id = step_id
        self.action = action
        self.fields = fields
        self.values = dict(values or {})

    def compose(self) -> ComposeResult:
        with Vertical(id="step-inputs"):
            yield Label(f"{self.step_id} · {self.action}", markup=False)
            with VerticalScroll():
                for name, field in self.fields.items():
                    note = Text(name, style=Style(bold=True))
                    note.append(" required" if field.is_required() else " optional")
                    if field.description:
                        note.append(f"  {field.description}", style=_DIM)
                    yield Static(note, classes="field-label")
                    value = show_value(self.values.get(name))
                    yield Input(
                        value,
                        placeholder=default_text(field),
                        id=f"field-{name}",
                        compact=True,
                    )
            yield Static("", id="inputs-problem", markup=False)
            yield Button("Done (ctrl+s)", id="done", variant="primary")

    @on(Button.Pressed, "#done")
    def action_done(self) -> None:
        result: dict[str, Any] = {}
        for name, field in self.fields.items():
            text = self.query_one(f"#field-{name}", Input).value
            if text == "":
                continue
            try:
                result[name] = parse_value(text, field)
            except ValueError as error:
                problem = f"{name}: {error}"
                self.query_one("#inputs-problem", Static).update(problem)
                return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)


class StepEditorScreen(Screen[bool]):
    """The steps of a runbook's latest version, edited in place, saved as a new one.

    Dismisses with True when a new version was stored.
    """

    CSS_PATH = "step_editor.tcss"
    SCREEN_TITLE = "Step editor"
    AUTO_FOCUS = "#steps"

    BINDINGS = [
        Binding("escape", "leave", "Back", id="back", tooltip="Leave without saving"),
        Binding("a", "add_step", "Add", id="add-step", tooltip="Add a step below"),
        Binding("x", "remove_step", "Remove", id="remove-step", tooltip="Remove"),
        Binding("K", "move(-1)", "Up", id="move-up", tooltip="Move the step up"),
        Binding("J", "move(1)", "Down", id="move-down", tooltip="Move it down"),
        Binding("enter", "edit_inputs", "Inputs", id="edit-inputs", show=False),
        Binding("s", "save", "Save", id="save-steps", tooltip="Validate and store"),
    ]
    """Keys of the step editor."""

    def __init__(self, stored: StoredRunbook) -> None:
        super().__init__()
        self.stored = stored
        self.document: CommentedMap = _yaml().load(stored.source_text)
        self.changed = False

    @property
    def services(self) -> Services:
        return cast("HalotermApp", self.app).services

    @property
    def steps(self) -> CommentedSeq:
        return cast(CommentedSeq, self.document["steps"])

    def compose(self) -> ComposeResult:
        title = Text(f"Steps of {self.stored.name}", style=Style(bold=True))
        title.append(f"  editing v{self.stored.version}", style=_DIM)
        yield Static(title, id="editor-title")
        yield RowTable(id="steps")
        yield Static(id="editor-problems")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#steps", DataTable)
        table.add_columns("#", "id", "action", "inputs")
        self.query_one("#editor-problems", Static).display = False
        self._redraw()

    def _redraw(self, cursor: int | None = None) -> None:
        table = self.query_one("#steps", DataTable)
        row = table.cursor_row if cursor is None else cursor
        table.clear()
        for index, step in enumerate(self.steps, start=1):
            inputs = ", ".join(str(key) for key in (step.get("with") or {}))
            table.add_row(
                str(index),
                Text(str(step.get("id", ""))),
                Text(str(step.get("action", ""))),
                Text(inputs, style=_DIM),
            )
        if self.steps:
            table.move_cursor(row=max(0, min(row, len(self.steps) - 1)))

    def _cursor(self) -> int:
        return self.query_one("#steps", DataTable).cursor_row

    # ------------------------------------------------------------------ edits

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("remove_step", "move", "edit_inputs"):
            return len(self.steps) > 0
        return True

    def action_add_step(self) -> None:
        taken = {str(step.get("id")) for step in self.steps}

        def added(result: tuple[str, str] | None) -> None:
            if result is None:
                return
            step = CommentedMap()
            step["id"], step["action"] = result
            step["with"] = CommentedMap()
            index = self._cursor() + 1 if self.steps else 0
            self.steps.insert(index, step)
            self.changed = True
            self._redraw(index)

        screen = AddStepScreen(self.services.registry.names(), taken)
        self.app.push_screen(screen, added)

    def action_remove_step(self) -> None:
        index = self._cursor()
        del self.steps[index]
        self.changed = True
        self._redraw(index)

    def action_move(self, offset: int) -> None:
        index = self._cursor()
        target = index + offset
        if not 0 <= target < len(self.steps):
            return
        step = self.steps.pop(index)
        self.steps.insert(target, step)
        self.changed = True
        self._redraw(target)

    def action_edit_inputs(self) -> None:
        index = self._cursor()
        step = self.steps[index]
        action = str(step.get("action", ""))
        try:
            inputs = type(self.services.registry.get(action)).Inputs
        except KeyError as error:
            self.notify(str(error), severity="error", markup=False)
            return

        def filled(values: dict[str, Any] | None) -> None:
            if values is None:
                return
            block = CommentedMap()
            for key, value in values.items():
                block[key] = value
            step["with"] = block
            self.changed = True
            self._redraw(index)

        screen = StepInputsScreen(
            str(step.get("id")), action, dict(inputs.model_fields), step.get("with")
        )
        self.app.push_screen(screen, filled)

    @on(DataTable.RowSelected, "#steps")
    def _row_chosen(self) -> None:
        self.action_edit_inputs()

    # ------------------------------------------------------------------ save

    def source(self) -> str:
        """The edited runbook as YAML text."""
        buffer = io.StringIO()
        _yaml().dump(self.document, buffer)
        return buffer.getvalue()

    def action_save(self) -> None:
        from haloterm.screens.runbook import draft_path

        if not self.changed:
            self.notify("Nothing changed: nothing stored.", markup=False)
            self.dismiss(False)
            return
        path = draft_path(self.stored.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.source(), encoding="utf-8")
        self.run_worker(self._save(path), group="steps-save", exit_on_error=False)

    async def _save(self, path: Any) -> None:
        from haloterm.screens.runbook import store_draft

        outcome = await self.services.store.call(
            store_draft,
            self.services,
            self.stored.name,
            path,
            same_definition_is_no_change=True,
        )
        if isinstance(outcome, str):
            box = self.query_one("#editor-problems", Static)
            text = Text("Not valid; nothing was stored.\n", style=Style(bold=True))
            text.append(outcome.strip())
            box.update(text)
            box.display = True
            return
        if outcome.created:
            self.notify(f"Saved {outcome.name} v{outcome.version}.", markup=False)
        else:
            self.notify(
                f"The steps define what v{outcome.version} does: nothing stored.",
                markup=False,
            )
        self.dismiss(outcome.created)

    def action_leave(self) -> None:
        if self.changed:
            self.notify("Step changes discarded.", markup=False)
        self.dismiss(False)
