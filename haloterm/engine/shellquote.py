"""Quoting substituted values for the shell context each one lands in.

A command template such as ``echo "dq: {{ ticket.title }}"`` puts the value inside
double quotes, where :func:`shlex.quote`'s single quotes are literal and ``$(...)``
still runs; ``echo 'sq: {{ x }}'`` puts it inside single quotes, where a quote in the
value ends the string. Before a command template is compiled, :func:`contextualise`
reads it as the shell will (plain words, single and double quotes, ``$(...)`` and
backticks, here-documents) and routes every ``{{ expr }}`` through the filter that is
right where it stands. Expressions the author marked ``| raw`` are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PLAIN, SINGLE, DOUBLE, HEREDOC, QUOTED_HEREDOC = (
    "plain",
    "single",
    "double",
    "heredoc",
    "quoted_heredoc",
)

_HEREDOC_START = re.compile(
    r"<<(-?)[ \t]*(?:'([^'\n]*)'|\"([^\"\n]*)\"|\\?([^\s;&|<>()]+))"
)
_RAW = re.compile(r"\|\s*raw\s*$")


@dataclass
class _Heredoc:
    delimiter: str
    quoted: bool
    strip_tabs: bool


def contextualise(source: str) -> str:
    """Rewrite a command template so each expression is quoted for its context.

    Args:
        source: the template text of a command field.

    Returns:
        The same template, with ``{{ expr }}`` turned into ``{{ (expr) | _sh_<ctx> }}``
        wherever the context is not a plain shell word (plain words keep the default
        :func:`shlex.quote` of the command environment's finalize hook).
    """
    out: list[str] = []
    stack: list[str] = [PLAIN]
    pending: list[_Heredoc] = []
    heredoc: _Heredoc | None = None
    line_start = 0
    i = 0
    n = len(source)
    while i < n:
        if source.startswith("{{", i):
            end = _expression_end(source, i + 2)
            inner = source[i + 2 : end]
            out.append(_wrap(inner, stack[-1], heredoc))
            i = end + 2
            continue
        if source.startswith("{%", i) or source.startswith("{#", i):
            close = "%}" if source[i + 1] == "%" else "#}"
            end = source.find(close, i + 2)
            end = n if end < 0 else end + 2
            out.append(source[i:end])
            i = end
            continue

        ch = source[i]
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
            out.append(ch)
            i += 1
            continue

        if state == SINGLE:
            if ch == "'":
                stack.pop()
        elif state == DOUBLE:
            if ch == "\\" and i + 1 < n:
                out.append(source[i : i + 2])
                i += 2
                continue
            if ch == '"':
                stack.pop()
            elif source.startswith("$(", i):
                stack.append(PLAIN)
                out.append("$(")
                i += 2
                continue
            elif ch == "`":
                stack.append("backtick")
        else:  # plain, or inside $( ) / backticks
            if ch == "\\" and i + 1 < n:
                out.append(source[i : i + 2])
                i += 2
                continue
            if ch == "'":
                stack.append(SINGLE)
            elif ch == '"':
                stack.append(DOUBLE)
            elif ch == "`" and state == "backtick":
                stack.pop()
            elif ch == "`":
                stack.append("backtick")
            elif ch == ")" and len(stack) > 1 and state == PLAIN:
                stack.pop()
            elif source.startswith("$(", i):
                stack.append(PLAIN)
                out.append("$(")
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
                    out.append(match.group(0))
                    i = match.end()
                    continue
            elif ch == "\n":
                line_start = i + 1
                if pending and len(stack) == 1:
                    heredoc = pending.pop(0)
                    stack[-1] = QUOTED_HEREDOC if heredoc.quoted else HEREDOC
        out.append(ch)
        i += 1
    return "".join(out)


def _expression_end(source: str, start: int) -> int:
    """Index of the ``}}`` closing an expression, skipping string literals in it."""
    i = start
    quote: str | None = None
    while i < len(source):
        ch = source[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif source.startswith("}}", i):
            return i
        i += 1
    return len(source)


def _wrap(inner: str, state: str, heredoc: _Heredoc | None) -> str:
    left = "-" if inner.startswith("-") else ""
    right = "-" if inner.endswith("-") else ""
    body = inner[len(left) : len(inner) - len(right)] if right else inner[len(left) :]
    if state in (PLAIN, "backtick") or _RAW.search(body.strip()):
        return "{{" + inner + "}}"
    if state in (HEREDOC, QUOTED_HEREDOC):
        assert heredoc is not None
        delimiter = heredoc.delimiter.replace("\\", "\\\\").replace("'", "\\'")
        args = f"('{delimiter}')"
        return "{{" + left + f" ({body.strip()}) | _sh_{state}{args} " + right + "}}"
    return "{{" + left + f" ({body.strip()}) | _sh_{state} " + right + "}}"
