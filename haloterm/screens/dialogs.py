"""Small modal dialogs shared by the screens: confirm, pick, ask for a comment."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with True only on an explicit yes."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm-yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm-no"),
    ]

    def __init__(self, question: str, *, confirm: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, markup=False, id="question")
            with Horizontal():
                yield Button(f"{self.confirm} (y)", variant="warning", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class CommentScreen(ModalScreen[str | None]):
    """Ask for a one-line comment; dismisses with the text, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="comment-cancel")]

    def __init__(self, title: str, *, detail: str = "", required: bool = False) -> None:
        super().__init__()
        self.prompt_title = title
        self.detail = detail
        self.required = required

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.prompt_title, markup=False, id="prompt")
            if self.detail:
                yield Static(self.detail, markup=False, id="detail")
            hint = "required" if self.required else "optional"
            yield Input(placeholder=f"Comment ({hint}); Enter to send", id="comment")
            yield Static("", id="problem", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if self.required and not text:
            self.query_one("#problem", Static).update("A comment is required.")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str | None]):
    """Pick one of a few values; dismisses with it, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="choice-cancel")]

    def __init__(
        self, title: str, choices: list[str], *, current: str | None = None
    ) -> None:
        super().__init__()
        self.prompt_title = title
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.prompt_title, markup=False)
            options = [
                Option(f"{c}{'  (now)' if c == self.current else ''}", id=c)
                for c in self.choices
            ]
            yield OptionList(*options, id="choices", markup=False)

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        if self.current in self.choices:
            option_list.highlighted = self.choices.index(self.current)
        option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
