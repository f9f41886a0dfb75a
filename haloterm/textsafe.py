"""Untrusted text made safe for a terminal: control characters become visible.

Ticket titles, alert payload fields, approval messages and comments come from
people and systems haloterm does not control. An escape sequence in one of them
would reach every terminal that shows it (a window title, a cleared screen, an
OSC 52 clipboard write). Each control character is replaced by its Unicode
picture (``ESC`` shows as ``␛``), so nothing is lost and nothing is obeyed.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BIDI = "\u202a-\u202e\u2066-\u2069"
"""Bidirectional overrides and isolates: they reorder what a terminal shows."""
_CONTROLS = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]")
_CONTROLS_AND_LINES = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI}]")
_JSON_UNSAFE = re.compile(f"[\\x7f-\\x9f{_BIDI}]")


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return "\ufffd"  # C1 controls and bidirectional overrides


def visible_controls(text: str, *, one_line: bool = False) -> str:
    """``text`` with every control character shown as a symbol.

    Args:
        text: untrusted text.
        one_line: newlines and tabs become symbols too (for a title).
    """
    pattern = _CONTROLS_AND_LINES if one_line else _CONTROLS
    return pattern.sub(_picture, text)


def visible_tree(value: Any) -> Any:
    """:func:`visible_controls` over every string (keys included) of a JSON value."""
    if isinstance(value, str):
        return visible_controls(value)
    if isinstance(value, dict):
        return {visible_tree(k): visible_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [visible_tree(v) for v in value]
    return value


def safe_json(value: Any, **options: Any) -> str:
    """JSON text safe to print to a terminal: like ``json.dumps`` (non-ASCII kept
    readable), with C1 controls and bidirectional overrides written as ``\\u``
    escapes, which JSON readers decode to the same data."""
    text = json.dumps(value, ensure_ascii=False, **options)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
