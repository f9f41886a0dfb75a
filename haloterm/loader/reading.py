"""Reading a runbook's YAML into data, with the position of every value.

See the package documentation for the rules this reader applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from ruamel.yaml.reader import ReaderError

from haloterm.loader.problems import (
    MAX_DEPTH,
    MAX_NODES,
    Loc,
    Mark,
    Problem,
    format_path,
)

# ------------------------------------------------------------------ reading YAML

_BOOL = re.compile(
    r"yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
)
_NULL = re.compile(r"~|null|Null|NULL|")
_INT = re.compile(
    r"[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)"
    r"|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+"
)
_FLOAT = re.compile(
    r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
    r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)"
    r"|\.(?:nan|NaN|NAN)"
)
_TAG = "tag:yaml.org,2002:"


@dataclass(frozen=True)
class _Slot:
    """Where one value sits in the file, and how an unquoted scalar was read."""

    value: Mark
    key: Mark | None = None
    plain: str | None = None
    """The source text of an unquoted scalar that was read as a non-string."""
    ambiguous: str | None = None
    """Why YAML 1.1 and 1.2 read that scalar differently (``base 60``)."""


@dataclass
class _Frame:
    container: dict[str, Any] | list[Any]
    mark: Mark
    anchor: str | None
    start: int
    key: tuple[str, Mark] | None = None
    merges: list[tuple[Any, Mark]] = field(default_factory=list)


class _Stop(Exception):
    """Reading cannot go on; the problem is already recorded."""


class Document:
    """The data read from one YAML document, with the position of every value."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.data: Any = None
        self.root: Mark = (1, 1)
        self.slots: dict[int, dict[str | int, _Slot]] = {}
        self.problems: list[Problem] = []
        self._keep: list[Any] = []
        self._stack: list[_Frame] = []
        self._anchors: dict[str, tuple[Any, int, _Slot]] = {}
        self._open: set[str] = set()
        self._nodes = 0
        self._seen_root = False
        self.complete = False
        """Whether the whole text was read (no syntax error, nothing refused)."""

    # -------------------------------------------------------------- problems

    def problem(self, mark: Mark, loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.source, *mark, format_path(loc), message))

    def stop(self, mark: Mark, message: str) -> _Stop:
        self.problem(mark, self._loc(), message)
        return _Stop()

    def _loc(self) -> Loc:
        parts: list[str | int] = []
        for frame in self._stack:
            if isinstance(frame.container, list):
                parts.append(len(frame.container))
            elif frame.key is not None:
                parts.append(frame.key[0])
        return tuple(parts)

    # -------------------------------------------------------------- events

    def read(self, text: str) -> None:
        try:
            for event in YAML(typ="rt").parse(text):
                self._event(event)
            self.complete = True
        except _Stop:
            pass
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            parts = [p for p in (exc.context, exc.problem) if p]
            hint = (
                " (indent with spaces, not tabs)" if "\\t" in str(exc.problem) else ""
            )
            self.problem(where, (), "YAML syntax: " + ", ".join(parts) + hint)
        except ReaderError as exc:
            before = text[: exc.position]
            where = (before.count("\n") + 1, len(before) - before.rfind("\n"))
            char = exc.character
            code = char if isinstance(char, int) else ord(str(char)[:1] or " ")
            self.problem(where, (), f"the character U+{code:04X} is not allowed")
        except YAMLError as exc:
            self.problem((1, 1), (), f"YAML error: {exc}")
        if not self._seen_root and not self.problems:
            self.problem((1, 1), (), "the file is empty")

    def _event(self, event: Any) -> None:
        mark = (event.start_mark.line + 1, event.start_mark.column + 1)
        if isinstance(event, DocumentStartEvent) and self._seen_root:
            raise self.stop(mark, "a runbook file holds one YAML document, not several")
        if isinstance(event, ScalarEvent):
            self._scalar(event, mark)
        elif isinstance(event, AliasEvent):
            self._alias(event.anchor, mark)
        elif isinstance(event, MappingStartEvent | SequenceStartEvent):
            self._start(event, mark)
        elif isinstance(event, MappingEndEvent | SequenceEndEvent):
            self._end()

    def _count(self, nodes: int, mark: Mark) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            why = (
                "through its aliases (an alias bomb?)"
                if self._aliased
                else "(split the runbook into child runbooks)"
            )
            raise self.stop(
                mark, f"the document holds more than {MAX_NODES} values {why}"
            )

    def _scalar(self, event: Any, mark: Mark) -> None:
        self._count(1, mark)
        top = self._stack[-1] if self._stack else None
        if top is not None and isinstance(top.container, dict) and top.key is None:
            top.key = (str(event.value), mark)
            return
        value, slot = self._resolve(event, mark)
        if event.anchor:
            self._anchors[event.anchor] = (value, 1, slot)
        self._add(value, slot)

    def _resolve(self, event: Any, mark: Mark) -> tuple[Any, _Slot]:
        text = str(event.value)
        if event.style == ">":
            # ruamel's parser marks where a folded scalar was folded with BEL, for
            # its own round-tripping; a file cannot hold a raw BEL, so drop them.
            text = text.replace("\a", "")
        tag = (
            event.tag
            if isinstance(event.tag, str) or event.tag is None
            else str(getattr(event.tag, "value", event.tag))
        )
        if tag is None and event.style is None:
            value, note = _plain(text)
            plain = text if not isinstance(value, str) and text else None
            return value, _Slot(mark, plain=plain, ambiguous=note)
        if tag in (None, "!", _TAG + "str"):
            return text, _Slot(mark)
        kind = tag.removeprefix(_TAG) if tag.startswith(_TAG) else None
        value, _ = _plain(text)
        expected = {"int": int, "float": float, "bool": bool, "null": type(None)}
        if kind in expected and type(value) is expected[kind]:
            return value, _Slot(mark)
        shown = "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag
        self.problem(mark, self._loc(), f"unsupported tag `{shown}` on {text!r}")
        return text, _Slot(mark)

    _aliased = False
    """Whether the document used an alias, for the size error's wording."""

    def _alias(self, anchor: str, mark: Mark) -> None:
        self._aliased = True
        if anchor in self._open:
            raise self.stop(mark, f"alias `*{anchor}` refers to itself")
        if anchor not in self._anchors:
            raise self.stop(mark, f"alias `*{anchor}` has no anchor before it")
        value, size, slot = self._anchors[anchor]
        self._count(size, mark)
        top = self._stack[-1] if self._stack else None
        if top is not None and isinstance(top.container, dict) and top.key is None:
            if not isinstance(value, str):
                raise self.stop(mark, "mapping keys must be plain strings")
            top.key = (value, mark)
            return
        self._add(value, _Slot(mark, plain=slot.plain, ambiguous=slot.ambiguous))

    def _start(self, event: Any, mark: Mark) -> None:
        top = self._stack[-1] if self._stack else None
        if top is not None and isinstance(top.container, dict) and top.key is None:
            raise self.stop(mark, "mapping keys must be plain strings")
        if len(self._stack) >= MAX_DEPTH:
            raise self.stop(mark, f"nesting deeper than {MAX_DEPTH} levels")
        tag = event.tag if isinstance(event.tag, str) else None
        if tag not in (None, "!", _TAG + "map", _TAG + "seq"):
            self.problem(mark, self._loc(), f"unsupported tag `{tag}`")
        self._count(1, mark)
        container: dict[str, Any] | list[Any] = (
            {} if isinstance(event, MappingStartEvent) else []
        )
        if event.anchor:
            self._open.add(event.anchor)
        self._keep.append(container)
        self.slots[id(container)] = {}
        self._stack.append(_Frame(container, mark, event.anchor, self._nodes))

    def _end(self) -> None:
        frame = self._stack.pop()
        for source, mark in frame.merges:
            self._merge(frame.container, source, mark)
        if frame.anchor:
            self._open.discard(frame.anchor)
            size = self._nodes - frame.start + 1
            self._anchors[frame.anchor] = (frame.container, size, _Slot(frame.mark))
        self._add(frame.container, _Slot(frame.mark))

    def _merge(self, target: Any, source: Any, mark: Mark) -> None:
        sources = source if isinstance(source, list) else [source]
        if not isinstance(target, dict) or not all(
            isinstance(s, dict) for s in sources
        ):
            raise self.stop(mark, "`<<` merges only mappings into a mapping")
        for item in sources:
            for key, value in item.items():
                if key not in target:
                    target[key] = value
                    self.slots[id(target)][key] = self.slots[id(item)][key]

    def _add(self, value: Any, slot: _Slot) -> None:
        if not self._stack:
            self.data, self.root, self._seen_root = value, slot.value, True
            return
        top = self._stack[-1]
        slots = self.slots[id(top.container)]
        if isinstance(top.container, list):
            slots[len(top.container)] = slot
            top.container.append(value)
            return
        assert top.key is not None
        key, key_mark = top.key
        top.key = None
        if key == "<<" and slot.plain is None:
            top.merges.append((value, key_mark))
        elif key in top.container:
            first = slots[key].key or slots[key].value
            self.problem(
                key_mark,
                (*self._loc(), key),
                f"duplicate key `{key}` (first at line {first[0]}); remove one",
            )
        else:
            top.container[key] = value
            slots[key] = _Slot(slot.value, key_mark, slot.plain, slot.ambiguous)

    # -------------------------------------------------------------- lookups

    def locate(self, loc: Loc, *, key: bool = False) -> tuple[Mark, Any, _Slot | None]:
        """The position of ``loc`` (or of its deepest existing parent), its value,
        and its slot when the whole path exists."""
        node, mark, slot = self.data, self.root, None
        for index, part in enumerate(loc):
            slots = self.slots.get(id(node), {})
            if part not in slots or isinstance(node, list) is not isinstance(part, int):
                return mark, node, None
            slot = slots[part]
            last = index == len(loc) - 1
            mark = slot.key if key and last and slot.key else slot.value
            node = node[part]
        return mark, node, slot

    def walk(self) -> Iterator[tuple[Loc, _Slot]]:
        """Every value's path and slot, each container visited once."""
        seen: set[int] = set()
        todo: list[tuple[Loc, Any]] = [((), self.data)]
        while todo:
            loc, node = todo.pop()
            if id(node) in seen or id(node) not in self.slots:
                continue
            seen.add(id(node))
            for part, slot in self.slots[id(node)].items():
                yield (*loc, part), slot
                todo.append(((*loc, part), node[part]))


def _plain(text: str) -> tuple[Any, str | None]:
    """An unquoted scalar as YAML 1.1 reads it, and a note when 1.2 differs."""
    if _NULL.fullmatch(text):
        return None, None
    if _BOOL.fullmatch(text):
        return text.lower() in ("yes", "true", "on"), None
    if _INT.fullmatch(text):
        return _int(text)
    if _FLOAT.fullmatch(text):
        return _float(text)
    return text, None


def _int(text: str) -> tuple[int, str | None]:
    digits = text.replace("_", "")
    sign = -1 if digits[0] == "-" else 1
    digits = digits.lstrip("+-")
    note = "digit separators" if "_" in text else None
    if digits == "0":
        return 0, note
    if digits.startswith("0b"):
        return sign * int(digits[2:], 2), "binary"
    if digits.startswith("0x"):
        return sign * int(digits[2:], 16), note
    if digits.startswith("0"):
        return sign * int(digits, 8), "octal"
    if ":" in digits:
        return sign * _base60(digits), "base 60"
    return sign * int(digits), note


def _float(text: str) -> tuple[float, str | None]:
    digits = text.replace("_", "").lower()
    note = "digit separators" if "_" in text else None
    sign = -1.0 if digits[0] == "-" else 1.0
    digits = digits.lstrip("+-")
    if digits == ".inf":
        return sign * float("inf"), note
    if digits == ".nan":
        return float("nan"), note
    if ":" in digits:
        whole, _, fraction = digits.partition(".")
        return sign * (_base60(whole) + float("0." + (fraction or "0"))), "base 60"
    return sign * float(digits), note


def _base60(digits: str) -> int:
    total = 0
    for part in digits.split(":"):
        total = total * 60 + int(part)
    return total
