"""Quoting substituted values for the shell context each one lands in.

A command template such as ``echo "dq: {{ ticket.title }}"`` puts the value inside
double quotes, where :func:`shlex.quote`'s single quotes are literal and ``$(...)``
still runs; ``echo 'sq: {{ x }}'`` puts it inside single quotes, where a quote in the
value ends the string.

Where a value lands is decided on the *rendered* command, not on the template: the
template is rendered with every value replaced by a placeholder made of characters
the shell treats as plain word characters, so the text around the placeholders is
exactly what the shell will read, whichever ``{% if %}`` branch was taken and
whatever ``| raw`` text was spliced in. :func:`place_values` then reads that text as
the shell does (plain words, comments, single, double and ``$'...'`` quotes,
``$(...)``, backticks, here-documents) and puts each value in, quoted for its place.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ESCAPED = "escaped"
"""A value right after an unpaired backslash: no quoting keeps it data there."""
PLAIN, SINGLE, DOUBLE, ANSI, BACKTICK, COMMENT, HEREDOC, QUOTED_HEREDOC = (
    "plain",
    "single",
    "double",
    "ansi",
    "backtick",
    "comment",
    "heredoc",
    "quoted_heredoc",
)

_HEREDOC_START = re.compile(
    r"<<(-?)[ \t]*(?:'([^'\n]*)'|\"([^\"\n]*)\"|\\?([^\s;&|<>()]+))"
)
_WORD_BREAK = frozenset(" \t\n;&|()<>")

Quoter = Callable[[Any, str, str | None], str]
"""Quote ``value`` for ``context``; the third argument is a here-document's
delimiter when the context is one."""


class Slots:
    """The values of one render, each standing in the text as a placeholder.

    A placeholder is two private-use characters around a per-render nonce and the
    value's index: plain word characters to the shell, and impossible to forge
    from a value (values never reach the text before :func:`place_values`).
    """

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._nonce = secrets.token_hex(8)
        self.pattern = re.compile("\ue000" + self._nonce + r"(\d+)\ue001")

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"\ue000{self._nonce}{len(self.values) - 1}\ue001"


@dataclass
class _Heredoc:
    delimiter: str
    quoted: bool
    strip_tabs: bool


def place_values(text: str, slots: Slots, quote: Quoter) -> str:
    """Replace each placeholder in a rendered command by its value, quoted for the
    shell context the placeholder stands in.

    Args:
        text: the rendered command, holding placeholders from ``slots``.
        slots: the values of this render.
        quote: quotes one value for one context.

    Returns:
        The command to run.
    """
    if not slots.values:
        return text
    out: list[str] = []
    for context, heredoc, chunk in _read(text, slots.pattern):
        if isinstance(chunk, int):
            out.append(quote(slots.values[chunk], context, heredoc))
        else:
            out.append(chunk)
    return "".join(out)


def _read(
    source: str, placeholder: re.Pattern[str]
) -> list[tuple[str, str | None, str | int]]:
    """Split the text into literal chunks and placeholders (as their index), each
    with the shell context it stands in."""
    chunks: list[tuple[str, str | None, str | int]] = []
    stack: list[str] = [PLAIN]
    pending: list[_Heredoc] = []
    heredoc: _Heredoc | None = None
    line_start = 0
    literal_from = 0
    i = 0
    n = len(source)

    def literal(upto: int) -> None:
        if upto > literal_from:
            chunks.append((stack[-1], None, source[literal_from:upto]))

    while i < n:
        ch = source[i]
        if ch == "\ue000":
            match = placeholder.match(source, i)
            if match is not None:
                literal(i)
                delimiter = heredoc.delimiter if heredoc is not None else None
                context = stack[-1]
                if context in _BACKSLASH_ESCAPES and _odd_backslashes(source, i):
                    context = ESCAPED
                chunks.append((context, delimiter, int(match.group(1))))
                i = literal_from = match.end()
                continue
        state = stack[-1]
        if heredoc is not None:
            if ch == "\n":
                line = source[line_start:i]
                if (
                    line.lstrip("\t") if heredoc.strip_tabs else line
                ) == heredoc.delimiter:
                    heredoc = pending.pop(0) if pending else None
                    stack[-1] = (
                        PLAIN
                        if heredoc is None
                        else (QUOTED_HEREDOC if heredoc.quoted else HEREDOC)
                    )
                line_start = i + 1
            i += 1
            continue
        if state == COMMENT:
            if ch == "\n":
                stack.pop()
                continue  # the newline is read again in the enclosing state
        elif state == SINGLE:
            if ch == "'":
                stack.pop()
        elif state == ANSI:
            if ch == "\\":
                i += _escape_width(source, i)
                continue
            if ch == "'":
                stack.pop()
        elif state == DOUBLE:
            if ch == "\\":
                i += _escape_width(source, i)
                continue
            if ch == '"':
                stack.pop()
            elif source.startswith("$(", i):
                stack.append(PLAIN)
                i += 2
                continue
            elif ch == "`":
                stack.append(BACKTICK)
        else:  # plain, or inside $( ) / backticks
            if ch == "\\":
                i += _escape_width(source, i)
                continue
            if ch == "#" and (i == 0 or source[i - 1] in _WORD_BREAK):
                stack.append(COMMENT)
            elif source.startswith("$'", i):
                stack.append(ANSI)
                i += 2
                continue
            elif ch == "'":
                stack.append(SINGLE)
            elif ch == '"':
                stack.append(DOUBLE)
            elif ch == "`" and state == BACKTICK:
                stack.pop()
            elif ch == "`":
                stack.append(BACKTICK)
            elif ch == ")" and len(stack) > 1 and state == PLAIN:
                stack.pop()
            elif source.startswith("$(", i):
                stack.append(PLAIN)
                i += 2
                continue
            elif source.startswith("<<", i) and not source.startswith("<<<", i):
                match = _HEREDOC_START.match(source, i)
                if match:
                    word = match.group(2) or match.group(3) or match.group(4) or ""
                    quoted = (
                        match.group(4) is None or source[match.start(4) - 1] == "\\"
                    )
                    pending.append(_Heredoc(word, quoted, bool(match.group(1))))
                    i = match.end()
                    continue
            elif ch == "\n":
                line_start = i + 1
                if pending and len(stack) == 1:
                    heredoc = pending.pop(0)
                    stack[-1] = QUOTED_HEREDOC if heredoc.quoted else HEREDOC
        i += 1
    literal(n)
    return chunks


_BACKSLASH_ESCAPES = frozenset({PLAIN, BACKTICK, DOUBLE, ANSI, HEREDOC})


def _escape_width(source: str, i: int) -> int:
    """How far a backslash at ``i`` reaches: over the next character, unless that
    starts a placeholder (which is read next, as an escaped one)."""
    return 1 if source.startswith("\ue000", i + 1) else 2


def _odd_backslashes(source: str, i: int) -> bool:
    count = 0
    while i - count - 1 >= 0 and source[i - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def contexts_of(text: str, slots: Slots) -> Sequence[str]:
    """The context of each placeholder in order (for tests and diagnostics)."""
    return [
        context
        for context, _, chunk in _read(text, slots.pattern)
        if isinstance(chunk, int)
    ]
