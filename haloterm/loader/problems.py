"""Located problems in runbook files, and the field paths they are reported under."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_BYTES = 1024 * 1024
"""Largest runbook file accepted."""
MAX_NODES = 100_000
"""Most nodes a document may hold once its aliases are expanded."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences."""

Loc = tuple[str | int, ...]
Mark = tuple[int, int]


@dataclass(frozen=True)
class Problem:
    """One located problem in a runbook file.

    Attributes:
        source: the file (or ``<string>``).
        line: 1-based line.
        column: 1-based column.
        path: the field, written like ``steps[1].with.url``; empty for the file.
        message: what is wrong, and how to fix it when that is known.
    """

    source: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}:{self.column}"
        return (
            f"{where}: {self.path}: {self.message}"
            if self.path
            else (f"{where}: {self.message}")
        )


class LoadError(ValueError):
    """A runbook file was rejected; ``problems`` lists every reason, sorted."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ------------------------------------------------------------------ paths


def format_path(loc: Sequence[str | int]) -> str:
    """Write a pydantic-style ``loc`` as ``steps[2].with.url``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def split_path(text: str) -> Loc:
    """Read ``hosts[0].name`` back into ``("hosts", 0, "name")``."""
    parts: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text):
        parts.append(int(index) if index else name)
    return tuple(parts)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean `x`?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def describe_value(value: Any) -> str:
    """Name a value the way YAML produced it: ``the boolean false``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    return f"the number {value!r}"
