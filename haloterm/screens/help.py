"""Help: every key of the screen it was opened from, with what it does."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    """The keys of one screen, and its help text (``HELP``) when it has one.

    The screen's own keys stand on the left, the keys that work anywhere and the
    cursor keys on the right, and the prose below: on an 80x24 terminal the keys
    are what must fit.
    """

    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="close-help"),
    ]

    def __init__(self, screen: Screen[Any]) -> None:
        super().__init__()
        self.for_screen = screen

    def compose(self) -> ComposeResult:
        here, anywhere, moving = self._sections()
        title = getattr(self.for_screen, "SCREEN_TITLE", type(self.for_screen).__name__)
        with VerticalScroll(id="help-body"):
            yield Static(Text(f"Keys: {title}", style="bold"), id="help-title")
            with Horizontal(id="help-columns"):
                yield Static(self._column(("On this screen", here)), id="help-here")
                yield Static(
                    self._column(("Anywhere", anywhere), ("Moving around", moving)),
                    id="help-global",
                )
            help_text = getattr(self.for_screen, "HELP", None)
            about = Text(_reflow(help_text or ""))
            about.append("\n\nEsc or ? closes this help.", style="dim")
            yield Static(about, id="help-about")

    @property
    def plain(self) -> str:
        """Everything the help shows, as plain text."""
        parts = ("#help-title", "#help-here", "#help-global", "#help-about")
        return "\n".join(str(self.query_one(part, Static).render()) for part in parts)

    def _sections(self) -> tuple[list[Text], list[Text], list[Text]]:
        here: list[Text] = []
        anywhere: list[Text] = []
        moving: list[Text] = []
        seen: set[str] = set()
        for active in self.for_screen.active_bindings.values():
            binding = active.binding
            if not binding.description or binding.action in seen:
                continue
            seen.add(binding.action)
            line = self._line(
                binding, enabled=active.enabled, tooltip=active.node is not self.app
            )
            if active.node is self.app:
                anywhere.append(line)
            elif binding.id is None:
                # Textual's own widget keys (cursor, paging) carry no id; ours do.
                moving.append(line)
            else:
                here.append(line)
        return here, anywhere, moving

    @staticmethod
    def _column(*sections: tuple[str, list[Text]]) -> Text:
        text = Text()
        for heading, lines in sections:
            if not lines:
                continue
            if text:
                text.append("\n")
            text.append(f"{heading}\n", style="bold underline")
            for line in lines:
                text.append_text(line)
                text.append("\n")
        return text

    def _line(self, binding: Binding, *, enabled: bool, tooltip: bool) -> Text:
        shown = self.app.get_key_display(binding)
        line = Text(f"{shown:>6} ", style="bold")
        line.append(binding.description)
        if tooltip and binding.tooltip:
            line.append(f"  {binding.tooltip}", style="dim")
        if not enabled:
            line.append("  (not now)", style="dim")
        return line


def _reflow(text: str) -> str:
    """Prose written with line breaks in the source, as paragraphs the help box
    wraps itself (a blank line keeps paragraphs apart)."""
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)
