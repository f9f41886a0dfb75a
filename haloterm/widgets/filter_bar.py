"""The ticket filter bar: free text plus ``priority:P1 status:open`` terms."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class FilterBar(Input):
    """A one-line filter; Enter applies it, Esc clears it and hands focus back."""

    DEFAULT_CSS = """
    FilterBar { display: none; border: tall $accent; }
    FilterBar.-open { display: block; }
    """
    BINDINGS = [
        Binding("escape", "clear_filter", "Clear", id="clear-filter", show=False)
    ]
    """Esc clears (said in the placeholder, so the footer keeps the screen's keys)."""

    class Applied(Message):
        """Enter was pressed: apply this filter text."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Cleared(Message):
        """Esc was pressed: the filter is empty and the bar closed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            placeholder="disk full priority:P1,P2 status:open (Enter apply, Esc clear)",
            id=id,
        )
        # Hidden, it must not take focus (nor the keys typed at start-up).
        self.can_focus = False

    def open(self) -> None:
        """Show the bar and focus it."""
        self.can_focus = True
        self.add_class("-open")
        self.focus()

    def close(self) -> None:
        self.remove_class("-open")
        self.can_focus = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Applied(event.value))
        if not event.value.strip():
            self.close()

    def action_clear_filter(self) -> None:
        """Empty the filter and close the bar."""
        self.value = ""
        self.close()
        self.post_message(self.Cleared())
