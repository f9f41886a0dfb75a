"""The run form: a runbook's params as typed fields, checked as they are typed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, Switch

from haloterm.engine import StartError
from haloterm.models import Param, ParamType, Runbook
from haloterm.params import ParamError, coerce_param

if TYPE_CHECKING:
    from haloterm.app import HalotermApp

logger = logging.getLogger(__name__)

CONFIRM_TAG = "prod"
"""Runbooks with this tag ask for their name typed out before they start."""


class ParamSwitch(Switch, inherit_bindings=False):
    """A yes/no param: space toggles it; Enter starts the run like everywhere in
    the form (a plain Switch would toggle on Enter, silently)."""

    BINDINGS = [Binding("space", "toggle_switch", "Toggle", show=False)]


class RunForm(ModalScreen[int | None]):
    """Start a runbook: dismisses with the new run's id and opens its run screen."""

    CSS_PATH = "run_form.tcss"
    SCREEN_TITLE = "Run a runbook"
    HELP = (
        "Enter in any field starts the run. Secrets are typed hidden, handed to the "
        "engine and never stored. Runbooks tagged prod need their name typed to "
        "confirm."
    )
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="cancel-run"),
        Binding("enter", "start_run", "Start", show=False, id="start-run-enter"),
        Binding(
            "ctrl+s", "start_run", "Start", id="start-run", tooltip="Start the run"
        ),
    ]

    app: HalotermApp

    def __init__(
        self,
        runbook_name: str,
        ticket_id: int | None = None,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.runbook_name = runbook_name
        self.ticket_id = ticket_id
        self.prefill = dict(params or {})
        self.runbook: Runbook | None = None
        self._names: list[str] = []
        self._starting = False
        self.keys_ready = False
        """False until the fields are built; the app holds keys until then."""

    def compose(self) -> ComposeResult:
        with Vertical(id="run-form"):
            yield Label(Text(f"Run {self.runbook_name}", style="bold"), id="form-title")
            yield VerticalScroll(id="fields")
            yield Static("", id="form-error", markup=False)
            with Horizontal(id="form-buttons"):
                yield Button("Start (Enter)", variant="primary", id="start")
                yield Button("Cancel (Esc)", id="cancel")

    async def on_mount(self) -> None:
        try:
            await self._load()
        finally:
            # Focus moves on the app's queue; keys wait until it has.
            self.app.call_later(self._ready_for_keys)

    def _ready_for_keys(self) -> None:
        self.keys_ready = True
        self.app.replay_keys()

    async def _load(self) -> None:
        store = self.app.services.store
        stored = await store.call(store.get_runbook, self.runbook_name)
        if stored is None:
            self._error(f"No runbook named {self.runbook_name}.")
            return
        self.runbook = stored.runbook
        title = f"Run {stored.runbook.display_title} ({stored.name} v{stored.version})"
        if self.ticket_id is not None:
            title += f" for ticket #{self.ticket_id}"
        self.query_one("#form-title", Label).update(Text(title, style="bold"))
        await self._build_fields(stored.runbook)

    async def _build_fields(self, runbook: Runbook) -> None:
        widgets: list[Widget] = []
        self._names = list(runbook.params)
        for index, (name, param) in enumerate(runbook.params.items()):
            widgets.append(Label(_label(name, param), classes="field-label"))
            widgets.append(self._field(index, param, self.prefill.get(name)))
            widgets.append(Static("", id=f"error-{index}", classes="field-error"))
        if CONFIRM_TAG in runbook.tags:
            widgets.append(
                Label(
                    Text(f"Tagged {CONFIRM_TAG}: type {runbook.name} to confirm"),
                    classes="field-label",
                )
            )
            widgets.append(Input(placeholder=runbook.name, id="confirm-name"))
            widgets.append(Static("", id="error-confirm", classes="field-error"))
        if not runbook.params and CONFIRM_TAG not in runbook.tags:
            widgets.append(Static("This runbook takes no params.", classes="hint"))
        await self.query_one("#fields", VerticalScroll).mount_all(widgets)
        self._focus_first_gap()

    @staticmethod
    def _field(index: int, param: Param, value: Any) -> Widget:
        field_id = f"param-{index}"
        given = value if value is not None else param.default
        if param.type is ParamType.CHOICE:
            choices = [(choice, choice) for choice in param.choices or []]
            if isinstance(given, str) and given in (param.choices or []):
                return Select(choices, id=field_id, allow_blank=True, value=given)
            return Select(choices, id=field_id, allow_blank=True)
        if param.type is ParamType.BOOLEAN:
            return ParamSwitch(value=bool(given), id=field_id)
        if param.type is ParamType.SECRET:
            return Input(password=True, id=field_id, placeholder="hidden; never stored")
        text = "" if given is None else str(given)
        return Input(value=text, id=field_id, placeholder=param.description or "")

    def _focus_first_gap(self) -> None:
        for index, name in enumerate(self._names):
            widget = self.query_one(f"#param-{index}")
            if isinstance(widget, Input) and not widget.value:
                if self._param(name).required:
                    widget.focus()
                    return
        confirm = self.query("#confirm-name")
        if confirm:
            confirm.first().focus()
            return
        self.query_one("#start", Button).focus()

    def _param(self, name: str) -> Param:
        assert self.runbook is not None
        return self.runbook.params[name]

    # ------------------------------------------------------------------ checking

    def on_input_changed(self, event: Input.Changed) -> None:
        field_id = event.input.id or ""
        if field_id.startswith("param-"):
            index = int(field_id.removeprefix("param-"))
            problem = self._check(self._names[index], event.value)
            self._show_problem(f"#error-{index}", problem or "")

    def _check(self, name: str, raw: str) -> str | None:
        param = self._param(name)
        if raw == "":
            return "required" if param.required else None
        try:
            coerce_param(param, raw)
        except ValueError as exc:
            return str(exc)
        return None

    def _collect(self) -> tuple[dict[str, Any], dict[str, str]]:
        values: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for index, name in enumerate(self._names):
            widget = self.query_one(f"#param-{index}")
            if isinstance(widget, Switch):
                values[name] = widget.value
                continue
            if isinstance(widget, Select):
                raw = "" if widget.is_blank() else str(widget.value)
            else:
                assert isinstance(widget, Input)
                raw = widget.value
            problem = self._check(name, raw)
            if problem:
                problems[name] = problem
            elif raw != "":
                values[name] = coerce_param(self._param(name), raw)
        return values, problems

    def _show_problems(self, problems: Mapping[str, str]) -> None:
        for index, name in enumerate(self._names):
            self._show_problem(f"#error-{index}", problems.get(name, ""))
        unknown = [f"{k}: {v}" for k, v in problems.items() if k not in self._names]
        self._error("; ".join(unknown))

    def _show_problem(self, selector: str, text: str) -> None:
        for widget in self.query(selector).results(Static):
            widget.update(Text(text))

    def _error(self, text: str) -> None:
        self.query_one("#form-error", Static).update(Text(text))

    # ------------------------------------------------------------------ starting

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.run_worker(self.start_run(), exclusive=True, group="start-run")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.run_worker(self.start_run(), exclusive=True, group="start-run")
        else:
            self.dismiss(None)

    def action_start_run(self) -> None:
        """Start the run with the values typed."""
        self.run_worker(self.start_run(), exclusive=True, group="start-run")

    def action_cancel(self) -> None:
        """Close the form without starting anything."""
        self.dismiss(None)

    async def start_run(self) -> None:
        """Check every field, start the run, and open its run screen."""
        runbook = self.runbook
        if runbook is None or self._starting:
            return
        values, problems = self._collect()
        self._show_problems(problems)
        if CONFIRM_TAG in runbook.tags:
            typed = self.query_one("#confirm-name", Input).value.strip()
            wrong = typed != runbook.name
            self._show_problem(
                "#error-confirm", f"type {runbook.name}" if wrong else ""
            )
            if wrong:
                return
        if problems:
            return
        self._starting = True
        try:
            execution_id = await self.app.services.engine.start(
                runbook.name,
                values,
                operator=self.app.operator,
                trigger="manual",
                ticket_id=self.ticket_id,
            )
        except ParamError as exc:
            self._show_problems(exc.problems)
            return
        except StartError as exc:
            self._error(str(exc))
            return
        finally:
            self._starting = False
        self._opened(execution_id)

    def _opened(self, execution_id: int) -> None:
        from haloterm.screens.run import RunScreen

        self.dismiss(execution_id)
        self.app.push_screen(RunScreen(execution_id))


def _label(name: str, param: Param) -> Text:
    text = Text(name, style="bold")
    kind = param.type.value
    if param.type is ParamType.CHOICE:
        kind = " | ".join(param.choices or [])
    text.append(f"  {kind}", style="dim")
    if param.required:
        text.append("  required", style="italic")
    if param.description:
        text.append(f"  {param.description}", style="dim")
    return text
