"""Where each value substituted into a command lands, as the shell will read it.

Values never become shell text (see :mod:`haloterm.engine.templates`): the command
refers to an environment variable holding each one, and the reference is written
for the context it stands in (``"${V}"`` as a word, ``${V}`` inside double quotes,
``'"${V}"'`` inside single quotes), or, in shell arithmetic, the value is written
out when it is a whole number.

The context is read from the *rendered* command, not the template: the template is
rendered with every value replaced by a placeholder made of characters the shell
treats as plain word characters, so the text around the placeholders is what the
shell will read, whichever ``{% if %}`` branch was taken and whatever ``| raw``
text was spliced in. :func:`place_values` reads that text as the shell does
(words, comments, single, double and ``$'...'`` quotes, ``$( )``, ``( )``,
``case``, backticks, ``${ }``, arithmetic, here-documents) and asks for each
value's text for its context. A wrong reading can only make a command say
something else: the value itself is never in the text.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ARITHMETIC = "arithmetic"
"""Inside ``$(( ))`` or ``(( ))``, where bash evaluates what variables hold."""
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

_WORD_BREAK = frozenset(" \t\n;&|()<>")

Quoter = Callable[[Any, str], str]
"""The text that stands for ``value`` in ``context``."""


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
    """Replace each placeholder in a rendered command by what ``quote`` gives for
    its value in the context the placeholder stands in.

    Args:
        text: the rendered command, holding placeholders from ``slots``.
        slots: the values of this render.
        quote: the text for one value in one context.

    Returns:
        The command to run.
    """
    if not slots.values:
        return text
    out: list[str] = []
    for chunk in _read(text, slots.pattern):
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            context, index = chunk
            out.append(quote(slots.values[index], context))
    return "".join(out)


_SUBST = "subst"
"""Inside ``$( )``: read as plain shell; its ``)`` ends it."""
_PAREN = "paren"
"""Inside a ``( )`` subshell or group within plain shell."""
_CASE = "case"
"""Between ``case`` and ``esac``, where a pattern's ``)`` ends nothing."""
_PLAIN_LIKE = frozenset({PLAIN, BACKTICK, _SUBST, _PAREN, _CASE})
_WORD = re.compile(r"[A-Za-z_]+")
_ARITH_PAREN, _ARITH_BRACKET, _ARITH_BRACE = "arith(", "arith[", "arith:"
"""Arithmetic: ``$(( ))``/``(( ))``; ``$[ ]`` and subscripts ``a[ ]``; the
``:offset:length`` of ``${s:1:2}``. Bash evaluates what variables hold there."""
_ARITH = frozenset({_ARITH_PAREN, _ARITH_BRACKET, _ARITH_BRACE})
_HEAD_PLAIN, _HEAD_DOUBLE = "brace-head", "brace-head-dq"
"""Just after ``${name`` (or ``${name[i]``), before any operator."""
_WORD_PLAIN, _WORD_DOUBLE = "brace-word", "brace-word-dq"
"""The word of ``${name:-word}`` and the like, unquoted or inside double quotes."""
_BRACES = frozenset({_HEAD_PLAIN, _HEAD_DOUBLE, _WORD_PLAIN, _WORD_DOUBLE})
_PARAM = re.compile(r"[#!]?(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])")
_SUBSCRIPT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\[")


def _open_arithmetic(stack: list[str], depths: list[int], kind: str) -> None:
    """Enter an arithmetic frame of ``kind``, with no brackets open in it yet."""
    stack.append(kind)
    depths.append(0)


def _open_expansion(
    source: str, i: int, stack: list[str], depths: list[int], quoted: bool
) -> int | None:
    """Push the frame a ``$`` construct at ``i`` opens (``$(( ))``, ``$[ ]``,
    ``${ }`` with its subscript, ``$( )``); the index after its opener, or None.

    Args:
        quoted: the construct stands inside double quotes or a here-document.
    """
    if source.startswith("$((", i):
        _open_arithmetic(stack, depths, _ARITH_PAREN)
        return i + 3
    if source.startswith("$[", i):
        _open_arithmetic(stack, depths, _ARITH_BRACKET)
        return i + 2
    if source.startswith("${", i):
        stack.append(_HEAD_DOUBLE if quoted else _HEAD_PLAIN)
        j = i + 2
        name = _PARAM.match(source, j)
        if name is not None:
            j = name.end()
            if source.startswith("[", j):
                _open_arithmetic(stack, depths, _ARITH_BRACKET)
                j += 1
        return j
    if source.startswith("$(", i):
        stack.append(_SUBST)
        return i + 2
    return None


def _read(source: str, placeholder: re.Pattern[str]) -> list[str | tuple[str, int]]:
    """Split the text into literal chunks and placeholders, each placeholder as
    the shell context it stands in and its value's index.

    Contexts nest on a stack: quotes, ``$( )`` and ``( )`` (with here-documents
    and ``case`` inside them), backticks, ``$(( ))``, comments, here-document
    bodies (whose ``$( )`` is shell again).
    """
    chunks: list[str | tuple[str, int]] = []
    stack: list[str] = [PLAIN]
    docs: list[_Heredoc] = []
    """The here-documents whose bodies are open, innermost last."""
    pending: list[_Heredoc] = []
    depths: list[int] = []
    """Open brackets inside each arithmetic frame, innermost last."""
    literal_from = 0
    i = 0
    n = len(source)

    def literal(upto: int) -> None:
        if upto > literal_from:
            chunks.append(source[literal_from:upto])

    while i < n:
        ch = source[i]
        if ch == "\ue000":
            match = placeholder.match(source, i)
            if match is not None:
                literal(i)
                context = stack[-1]
                if context in _PLAIN_LIKE:
                    context = BACKTICK if context == BACKTICK else PLAIN
                elif context in _ARITH:
                    context = ARITHMETIC
                elif context in _BRACES:
                    context = DOUBLE if context.endswith("-dq") else PLAIN
                if context in _BACKSLASH_ESCAPES and _odd_backslashes(source, i):
                    context = ESCAPED
                chunks.append((context, int(match.group(1))))
                i = literal_from = match.end()
                continue
        state = stack[-1]
        if state in (HEREDOC, QUOTED_HEREDOC):
            doc = docs[-1]
            if ch == "\n":
                line = source[source.rfind("\n", 0, i) + 1 : i]
                if (line.lstrip("\t") if doc.strip_tabs else line) == doc.delimiter:
                    stack.pop()
                    docs.pop()
                    if pending and stack[-1] in _PLAIN_LIKE:
                        _open_doc(stack, docs, pending)
                i += 1
                continue
            if state == HEREDOC:
                # An unquoted body expands: $( ) and backticks in it are shell.
                if ch == "\\":
                    i += _escape_width(source, i)
                    continue
                opened = _open_expansion(source, i, stack, depths, quoted=True)
                if opened is not None:
                    i = opened
                    continue
                if ch == "`":
                    stack.append(BACKTICK)
            i += 1
            continue
        if state in _ARITH:
            closed = _close_arithmetic(source, i, state, stack, depths)
            if closed is not None:
                i = closed
                continue
            opened = _open_expansion(source, i, stack, depths, quoted=False)
            i = opened if opened is not None else i + 1
            continue
        if state in _BRACES:
            i = _read_braces(source, i, state, stack, depths)
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
            elif ch == "$":
                opened = _open_expansion(source, i, stack, depths, quoted=True)
                if opened is not None:
                    i = opened
                    continue
            elif ch == "`":
                stack.append(BACKTICK)
        else:  # plain shell: the top level, $( ), ( ), case, backticks
            at_word = i == 0 or source[i - 1] in _WORD_BREAK
            word = _WORD.match(source, i) if at_word else None
            if ch == "\\":
                i += _escape_width(source, i)
                continue
            if ch == "#" and at_word:
                stack.append(COMMENT)
            elif (
                word is not None and word.group() == "case" and _ends_word(source, word)
            ):
                stack.append(_CASE)
                i = word.end()
                continue
            elif (
                word is not None
                and word.group() == "esac"
                and _ends_word(source, word)
                and state == _CASE
            ):
                stack.pop()
                i = word.end()
                continue
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
            elif source.startswith("((", i):
                # Bash reads (( as arithmetic wherever a command may start:
                # ((, if((, while((, ! ((.
                _open_arithmetic(stack, depths, _ARITH_PAREN)
                i += 2
                continue
            elif ch == "$" and (
                (opened := _open_expansion(source, i, stack, depths, quoted=False))
                is not None
            ):
                i = opened
                continue
            elif at_word and (subscript := _SUBSCRIPT.match(source, i)) is not None:
                # a[i]=... : the subscript of an indexed array is arithmetic.
                _open_arithmetic(stack, depths, _ARITH_BRACKET)
                i = subscript.end()
                continue
            elif ch == "(" and state != _CASE:
                stack.append(_PAREN)
            elif ch == ")" and state in (_SUBST, _PAREN):
                stack.pop()
            elif source.startswith("<<", i) and not source.startswith("<<<", i):
                found = _heredoc_start(source, i)
                if found is not None:
                    doc, i = found
                    pending.append(doc)
                    continue
            elif ch == "\n" and pending:
                i += 1
                _open_doc(stack, docs, pending)
                continue
        i += 1
    literal(n)
    return chunks


def _close_arithmetic(
    source: str, i: int, state: str, stack: list[str], depths: list[int]
) -> int | None:
    """Count brackets in an arithmetic frame; the index after its end when it ends
    at ``i``, else None (the character is read as part of it)."""
    ch = source[i]
    if state == _ARITH_PAREN:
        if ch == "(":
            depths[-1] += 1
        elif ch == ")":
            if depths[-1] == 0 and source.startswith("))", i):
                stack.pop()
                depths.pop()
                return i + 2
            depths[-1] = max(0, depths[-1] - 1)
    elif state == _ARITH_BRACKET:
        if ch == "[":
            depths[-1] += 1
        elif ch == "]":
            if depths[-1] == 0:
                stack.pop()
                depths.pop()
                return i + 1
            depths[-1] -= 1
    elif ch == "}":  # the end of ${s:offset:length} ends the ${ } too
        stack.pop()
        depths.pop()
        if stack[-1] in _BRACES:
            stack.pop()
        return i + 1
    return None


def _read_braces(
    source: str, i: int, state: str, stack: list[str], depths: list[int]
) -> int:
    """Read one character inside ``${ }``; the index to read next."""
    ch = source[i]
    quoted = state.endswith("-dq")
    if ch == "}":
        stack.pop()
        return i + 1
    if state in (_HEAD_PLAIN, _HEAD_DOUBLE):
        if ch == ":" and source[i + 1 : i + 2] not in ("-", "=", "?", "+"):
            _open_arithmetic(stack, depths, _ARITH_BRACE)  # ${s:offset:length}
            return i + 1
        # Any operator (:- - = ? + # % / ^ , @) starts the word part.
        stack[-1] = _WORD_DOUBLE if quoted else _WORD_PLAIN
    if ch == "\\":
        return i + _escape_width(source, i)
    opened = _open_expansion(source, i, stack, depths, quoted=quoted)
    if opened is not None:
        return opened
    if ch == '"':
        stack.append(DOUBLE)
    elif ch == "'" and not quoted:
        stack.append(SINGLE)
    elif ch == "`":
        stack.append(BACKTICK)
    return i + 1


def _open_doc(stack: list[str], docs: list[_Heredoc], pending: list[_Heredoc]) -> None:
    """Start the body of the next here-document waiting for its line."""
    doc = pending.pop(0)
    docs.append(doc)
    stack.append(QUOTED_HEREDOC if doc.quoted else HEREDOC)


def _ends_word(source: str, word: re.Match[str]) -> bool:
    end = word.end()
    return end == len(source) or source[end] in _WORD_BREAK


def _heredoc_start(source: str, i: int) -> tuple[_Heredoc, int] | None:
    """The here-document a ``<<`` at ``i`` opens, and where its word ends.

    The delimiter is the word with its quotes taken out, as the shell does; any
    quoting in the word (``'EOF'``, ``"EOF"``, ``E"OF"``, ``\\EOF``) makes the
    body literal.
    """
    j = i + 2
    strip_tabs = source.startswith("-", j)
    if strip_tabs:
        j += 1
    while j < len(source) and source[j] in " \t":
        j += 1
    delimiter: list[str] = []
    quoted = False
    while j < len(source) and source[j] not in _WORD_BREAK:
        ch = source[j]
        if ch in "'\"":
            close = source.find(ch, j + 1)
            if close < 0:
                return None
            delimiter.append(source[j + 1 : close])
            quoted = True
            j = close + 1
        elif ch == "\\" and j + 1 < len(source):
            delimiter.append(source[j + 1])
            quoted = True
            j += 2
        else:
            delimiter.append(ch)
            j += 1
    if not delimiter:
        return None
    return _Heredoc("".join(delimiter), quoted, strip_tabs), j


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
