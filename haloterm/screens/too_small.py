"""A notice shown in place of the console while the terminal is too small."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static


class TooSmallScreen(Screen[None]):
    """Covers the console until the terminal grows back to a usable size."""

    def compose(self) -> ComposeResult:
        yield Static(self._text(self.app.size.width, self.app.size.height), id="notice")

    def show_size(self, width: int, height: int) -> None:
        """Show the terminal's current size."""
        self.query_one("#notice", Static).update(self._text(width, height))

    @staticmethod
    def _text(width: int, height: int) -> str:
        from haloterm.app import MIN_HEIGHT, MIN_WIDTH

        return (
            f"Terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT}, "
            f"have {width}x{height}). Runs carry on; resize to continue."
        )
