"""Help: every key of the screen it was opened from, with what it does."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    """The keys of one screen, and its help text (``HELP``) when it has one."""

    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="close-help"),
    ]

    def __init__(self, screen: Screen[Any]) -> None:
        super().__init__()
        self.for_screen = screen

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(self._keys(), id="help-keys")

    def _keys(self) -> Text:
        text = Text()
        title = getattr(self.for_screen, "SCREEN_TITLE", type(self.for_screen).__name__)
        text.append(f"Keys: {title}\n\n", style="bold")
        help_text = getattr(self.for_screen, "HELP", None)
        if help_text:
            text.append(f"{help_text.strip()}\n\n")
        seen: set[str] = set()
        for active in self.for_screen.active_bindings.values():
            binding = active.binding
            if not binding.description or binding.description in seen:
                continue
            seen.add(binding.description)
            shown = self.app.get_key_display(binding)
            line = Text(f"{shown:>10}  ", style="bold")
            line.append(binding.description)
            if binding.tooltip:
                line.append(f"  {binding.tooltip}", style="dim")
            if not active.enabled:
                line.append("  (not now)", style="dim")
            text.append_text(line)
            text.append("\n")
        text.append("\n   Esc / ?  close this help", style="dim")
        return text
