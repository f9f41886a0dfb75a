"""The key footer: compact on narrow terminals, and cheap when only focus moves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

if TYPE_CHECKING:
    from textual.screen import Screen

COMPACT_BELOW = 100
"""Terminal widths under this get the compact footer without the palette key, so
every key of the screen still fits at 80 columns."""

Shown = tuple[tuple[str, str, bool], ...]


def shown_keys(screen: Screen[object]) -> Shown:
    """The keys a footer shows on a screen: (action, key, enabled) in order."""
    return tuple(
        (binding.action, binding.key, enabled)
        for _, binding, enabled, _ in screen.active_bindings.values()
        if binding.show
    )


class KeyFooter(Footer):
    """Textual's footer, rebuilt only when the keys shown change.

    Focus moving between two panes changes which keys are enabled, not which are
    shown; the stock footer rebuilds every key widget each time (most of a focus
    change's cost), this one dims or lights the keys in place.
    """

    def __init__(self) -> None:
        super().__init__(compact=False)
        self._shown: Shown | None = None

    def on_resize(self, event: events.Resize) -> None:
        # Narrow: tighter keys, and ^p (also in the help screen) gives way to them.
        narrow = event.size.width < COMPACT_BELOW
        self.compact = narrow
        if self.show_command_palette == narrow:
            self.show_command_palette = not narrow
            if self._bindings_ready:
                self.refresh(recompose=True)

    def bindings_changed(self, screen: Screen[object]) -> None:
        if not screen.app.app_focus or screen is not self.screen:
            super().bindings_changed(screen)
            return
        keys = shown_keys(screen)
        before, self._shown = self._shown, keys
        same = before is not None and [k[:2] for k in before] == [k[:2] for k in keys]
        if not same or not self.is_attached:
            super().bindings_changed(screen)
            return
        enabled = {action: on for action, _, on in keys}
        for widget in self.query(FooterKey):
            on = enabled.get(widget.action)
            if on is not None:
                # FooterKey keeps no public setter; _disabled is what its click reads.
                widget._disabled = not on
                widget.set_class(not on, "-disabled")
