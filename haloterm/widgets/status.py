"""Status glyphs, words and styles shared by every screen that shows a run.

A status is always drawn as a glyph and a word, so it reads the same with colours off
(``NO_COLOR``) as with them on. Colours come from the app's theme variables when a
mapping of them is given (``App.theme_variables``), with plain fallbacks otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from rich.style import Style
from rich.text import Text

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
"""Frames of the running spinner; frame 0 is the one frozen snapshots show."""


@dataclass(frozen=True)
class StatusLook:
    """How one status is drawn.

    Attributes:
        glyph: a one-cell symbol shown before the word.
        variable: the theme variable that colours it (``success``, ``error``, ...).
        fallback: the colour used when no theme variables are at hand.
        dim: whether the whole line is drawn dim (pending, skipped).
    """

    glyph: str
    variable: str
    fallback: str
    dim: bool = False


_LOOKS: dict[str, StatusLook] = {
    "pending": StatusLook("○", "text-muted", "grey50", dim=True),
    "queued": StatusLook("○", "text-muted", "grey50", dim=True),
    "running": StatusLook(SPINNER[0], "primary", "cyan"),
    "waiting": StatusLook("⏸", "warning", "dark_orange"),
    "passed": StatusLook("✔", "success", "green"),
    "succeeded": StatusLook("✔", "success", "green"),
    "failed": StatusLook("✘", "error", "red"),
    "skipped": StatusLook("⊘", "text-disabled", "grey42", dim=True),
    "cancelled": StatusLook("■", "error", "red"),
    "interrupted": StatusLook("⚠", "warning", "dark_orange"),
    "approved": StatusLook("✔", "success", "green"),
    "rejected": StatusLook("✘", "error", "red"),
    "timed_out": StatusLook("⌛", "error", "red"),
}
_UNKNOWN = StatusLook("?", "text-muted", "grey50")


def status_look(status: str) -> StatusLook:
    """The look of a step, execution or approval status (unknown ones get ``?``)."""
    return _LOOKS.get(status, _UNKNOWN)


def status_style(status: str, variables: Mapping[str, str] | None = None) -> Style:
    """The Rich style of a status, from theme variables when given.

    Args:
        status: a step, execution or approval status.
        variables: the app's theme variables (``App.theme_variables``), or None.

    Returns:
        A style with the status colour, dim for pending and skipped.
    """
    look = status_look(status)
    colour = look.fallback
    if variables is not None:
        colour = variables.get(look.variable, colour)
    try:
        style = Style.parse(colour)
    except Exception:
        style = Style.parse(look.fallback)
    return style + Style(dim=True) if look.dim else style


def status_text(
    status: str,
    *,
    frame: int = 0,
    variables: Mapping[str, str] | None = None,
) -> Text:
    """The glyph and word of a status, styled, e.g. ``✔ passed``.

    Args:
        status: a step, execution or approval status.
        frame: the spinner frame drawn for ``running``.
        variables: the app's theme variables, or None for fallback colours.

    Returns:
        A Text holding the glyph, a space and the status word.
    """
    glyph = status_look(status).glyph
    if status == "running":
        glyph = SPINNER[frame % len(SPINNER)]
    word = status.replace("_", " ")
    return Text(f"{glyph} {word}", style=status_style(status, variables))


def format_duration(seconds: float) -> str:
    """A short duration: ``850ms``, ``12.3s``, ``4m05s``, ``2h03m``."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def elapsed(
    started: datetime | None, finished: datetime | None, now: datetime
) -> float | None:
    """Seconds between start and finish (or now while unfinished); None if unstarted."""
    if started is None:
        return None
    end = finished or now
    return (end - started).total_seconds()


def format_size(size: int) -> str:
    """Bytes as ``512 B``, ``12.0 KB``, ``60.0 MB`` (decimal units, like the banner)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
