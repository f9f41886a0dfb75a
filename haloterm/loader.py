"""Runbook files: YAML text to a validated :class:`~haloterm.models.Runbook`.

A file that does not load is rejected whole, with every problem found at once, each
with its line, column and field path (``steps[2].with.url``), sorted by position.

How YAML is read
----------------
ruamel.yaml's parser supplies the events with their positions; this module builds the
data itself, which gives it exact control over four things:

* **Duplicate keys** are problems (each with the duplicate's position); the first
  value is kept so that the rest of the file is still checked.
* **Aliases** are counted as they expand: a document that would grow past
  :data:`MAX_NODES` nodes (an alias bomb) is refused before anything is copied, so
  time and memory stay bounded. Recursive aliases, complex keys, nesting deeper than
  :data:`MAX_DEPTH` and unknown tags are refused too.
* **Scalars follow YAML 1.1**, the way PyYAML and most other tools read them: ``NO``
  is false, ``1.10`` is the float 1.1, ``0755`` is 493 and ``22:30`` is 1350. We chose
  1.1 over ruamel's default 1.2 so a runbook means the same to haloterm as to any
  other tool that reads it, and so a surprise is loud rather than silent: string
  fields are strict, so an unquoted ``NO`` in a string field is an error that shows
  the source text and says to quote it, instead of a string to us and ``false`` to
  the next tool. Numbers whose meaning differs between YAML 1.1 and 1.2 (base 60
  ``1:30``, leading-zero octal ``0755``, ``0b101``, ``1_000``) are always reported,
  whatever the field. Two deliberate departures from 1.1: mapping keys are always
  strings (so a trigger's ``on:`` key stays ``"on"``), and dates stay strings.
* **Size**: a file over :data:`MAX_BYTES` is refused unread.

After reading, the data is validated with the pydantic models (each error's ``loc``
is mapped back to the YAML node), then cross-checked: step ids, ``goto`` targets,
actions and their inputs, and the names every template reads.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
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

from haloterm.engine.templates import (
    ROOT_NAMES,
    Renderer,
    TemplateError,
    is_templated,
    template_references,
    template_roots,
)
from haloterm.models import STEP_ID, Param, Runbook, RunRunbook
from haloterm.params import coerce_param

if TYPE_CHECKING:
    from haloterm.plugins.base import Action
    from haloterm.plugins.registry import ActionRegistry

logger = logging.getLogger(__name__)

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


class _Document:
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
        self.problems.append(Problem(self.source, *mark, _path(loc), message))

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
            raise self.stop(
                mark,
                f"the document expands to more than {MAX_NODES} values through "
                "its aliases (an alias bomb?)",
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

    def _alias(self, anchor: str, mark: Mark) -> None:
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


# ------------------------------------------------------------------ paths


def _path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _split_path(text: str) -> Loc:
    parts: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text):
        parts.append(int(index) if index else name)
    return tuple(parts)


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    return f"the number {value!r}"


# ------------------------------------------------------------------ checking


class _Checker:
    """Validates one read document and collects every located problem."""

    def __init__(
        self, doc: _Document, registry: ActionRegistry, renderer: Renderer
    ) -> None:
        self.doc = doc
        self.registry = registry
        self.renderer = renderer
        self.reported: set[Loc] = set()

    def add(self, loc: Loc, message: str, *, key: bool = False) -> None:
        mark, _, _ = self.doc.locate(loc, key=key)
        self.doc.problem(mark, loc, message)
        self.reported.add(loc)

    def run(self) -> Runbook | None:
        data = self.doc.data
        runbook: Runbook | None = None
        try:
            runbook = Runbook.model_validate(data)
        except ValidationError as exc:
            errors = [self._relocate_default(err) for err in exc.errors()]
            self.errors(errors, (), Runbook)
        steps = data.get("steps")
        steps = steps if isinstance(steps, list) else []
        ids = self._step_ids(steps)
        params = data.get("params")
        declared = list(params) if isinstance(params, dict) else []
        for index, step in enumerate(steps):
            if isinstance(step, dict):
                self._step(index, step, ids, declared)
        self._triggers(data.get("triggers"), ids, declared)
        self._ambiguous()
        return runbook

    # -------------------------------------------------------------- pydantic

    def errors(
        self,
        errors: list[Any],
        base: Loc,
        model: type[BaseModel],
        *,
        skip_templated: bool = False,
    ) -> None:
        """Report pydantic errors whose ``loc`` is relative to ``base``."""
        unions: dict[Loc, dict[Any, list[tuple[Loc, Any]]]] = {}
        for err in errors:
            loc = base + tuple(err["loc"])
            depth = self._depth(loc)
            is_missing = err["type"] == "missing" and depth == len(loc) - 1
            if depth < len(base) or depth == len(loc) or is_missing:
                self._error(loc, err, base, model, skip_templated)
                continue
            rest = loc[:depth] + loc[depth + 1 :]
            unions.setdefault(loc[:depth], {}).setdefault(loc[depth], []).append(
                (rest, err)
            )
        for prefix, branches in unions.items():
            self._union(prefix, branches, base, model, skip_templated)

    def _depth(self, loc: Loc) -> int:
        node = self.doc.data
        for depth, part in enumerate(loc):
            if isinstance(node, dict) and isinstance(part, str) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return depth
        return len(loc)

    def _union(
        self,
        prefix: Loc,
        branches: dict[Any, list[tuple[Loc, Any]]],
        base: Loc,
        model: type[BaseModel],
        skip_templated: bool,
    ) -> None:
        def score(errs: list[tuple[Loc, Any]]) -> int:
            return sum(
                10 if rest == prefix else int(err["type"] in _SHAPE_ERRORS)
                for rest, err in errs
            )

        best = min(branches.values(), key=score)
        if score(best) < 10:
            self.errors(
                [{**err, "loc": rest[len(base) :]} for rest, err in best],
                base,
                model,
                skip_templated=skip_templated,
            )
            return
        _, value, _ = self.doc.locate(prefix)
        if skip_templated and len(prefix) > len(base) and is_templated(value):
            return
        if prefix and prefix[-1] == "on_failure":
            message = (
                "must be `abort`, `continue`, `{goto: <step id>}` or "
                "`{run: <runbook name>}`"
            )
        else:
            messages = [_friendly(err) for errs in branches.values() for _, err in errs]
            message = ", or ".join(dict.fromkeys(messages))
        self.add(prefix, message)

    def _error(
        self,
        loc: Loc,
        err: Any,
        base: Loc,
        model: type[BaseModel],
        skip_templated: bool,
    ) -> None:
        kind = err["type"]
        depth = self._depth(loc)
        _, value, slot = self.doc.locate(loc[:depth])
        if depth >= len(base):
            # Union member names in a nested ``loc`` are not fields: drop them.
            loc = loc[:depth] + (loc[-1:] if kind == "missing" else ())
        if (
            skip_templated
            and kind not in _SHAPE_ERRORS
            and depth > len(base)
            and is_templated(value)
        ):
            return
        if kind == "missing":
            message = "field required"
        elif kind == "extra_forbidden":
            fields = _model_fields(model, loc[len(base) : -1])
            message = "unknown field" + _did_you_mean(str(loc[-1]), fields)
        else:
            message = _friendly(err)
        if slot is not None and slot.plain is not None and depth == len(loc):
            if kind == "string_type" or message.startswith("must be a string"):
                how = f" ({slot.ambiguous})" if slot.ambiguous else ""
                message = (
                    f"must be a string, but the unquoted `{slot.plain}` is read as "
                    f"{_describe(value)}{how}: quote it"
                )
            elif (
                slot.ambiguous
                and kind != "extra_forbidden"
                and (slot.plain not in message)
            ):
                message += f" (the unquoted `{slot.plain}` is read as {value!r})"
        self.add(loc, message, key=kind == "extra_forbidden")

    def _relocate_default(self, err: Any) -> Any:
        """Move a param's default error from ``params.x`` to ``params.x.default``."""
        loc = tuple(err["loc"])
        if len(loc) != 2 or loc[0] != "params" or err["type"] != "value_error":
            return err
        params = self.doc.data.get("params")
        raw = params.get(loc[1]) if isinstance(params, dict) else None
        if not isinstance(raw, dict) or "default" not in raw:
            return err
        message = _friendly(err)
        if "default" in message or message == _default_problem(raw):
            return {**err, "loc": (*loc, "default")}
        return err

    # -------------------------------------------------------------- cross-checks

    def _step_ids(self, steps: list[Any]) -> list[str]:
        first: dict[str, int] = {}
        for index, step in enumerate(steps):
            step_id = step.get("id") if isinstance(step, dict) else None
            if not isinstance(step_id, str):
                continue
            if step_id in first:
                line = self.doc.locate(("steps", first[step_id], "id"))[0][0]
                self.add(
                    ("steps", index, "id"),
                    f"duplicate step id `{step_id}` (first at line {line})",
                )
            else:
                first[step_id] = index
        return list(first)

    def _step(
        self, index: int, step: dict[str, Any], ids: list[str], declared: list[str]
    ) -> None:
        here: Loc = ("steps", index)
        on_failure = step.get("on_failure")
        if isinstance(on_failure, dict) and isinstance(on_failure.get("goto"), str):
            target = on_failure["goto"]
            if target not in ids and STEP_ID.fullmatch(target):
                self.add(
                    (*here, "on_failure", "goto"),
                    f"`{target}` is not a step of this runbook"
                    + _did_you_mean(target, ids),
                )
        name = step.get("action")
        inputs = step.get("with", {})
        if isinstance(name, str):
            self._action(here, name, inputs)
        for key in ("name", "with"):
            if key in step:
                self._templates((*here, key), step[key], ids, declared)
        when = step.get("when")
        if isinstance(when, str):
            self._template((*here, "when"), when, ids, declared, expression=True)

    def _action(self, here: Loc, name: str, inputs: Any) -> None:
        if name not in self.registry:
            from haloterm.plugins.registry import UnknownAction

            unknown = UnknownAction(
                name, self.registry.names(), self.registry.broken_reason(name)
            )
            self.add((*here, "action"), str(unknown))
            return
        if not isinstance(inputs, dict):
            return
        action = self.registry.get(name)
        base: Loc = (*here, "with")
        try:
            action.Inputs.model_validate(inputs)
        except ValidationError as exc:
            self.errors(exc.errors(), base, action.Inputs, skip_templated=True)
        for path, message in _static_check(action, inputs):
            self.add(base + _split_path(path), message)

    def _triggers(self, triggers: Any, ids: list[str], declared: list[str]) -> None:
        if not isinstance(triggers, list):
            return
        for index, trigger in enumerate(triggers):
            if not isinstance(trigger, dict):
                continue
            here: Loc = ("triggers", index)
            params = trigger.get("params")
            if isinstance(params, dict):
                for key in params:
                    if key not in declared:
                        self.add(
                            (*here, "params", key),
                            f"`{key}` is not a param of this runbook"
                            + _did_you_mean(key, declared),
                            key=True,
                        )
                self._templates((*here, "params"), params, ids, declared)
            if isinstance(trigger.get("dedupe"), str):
                self._template((*here, "dedupe"), trigger["dedupe"], ids, declared)

    # -------------------------------------------------------------- templates

    def _templates(
        self, loc: Loc, value: Any, ids: list[str], declared: list[str]
    ) -> None:
        if isinstance(value, str):
            if is_templated(value):
                self._template(loc, value, ids, declared)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._templates((*loc, key), item, ids, declared)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self._templates((*loc, index), item, ids, declared)

    def _template(
        self,
        loc: Loc,
        text: str,
        ids: list[str],
        declared: list[str],
        *,
        expression: bool = False,
    ) -> None:
        bare = expression and not is_templated(text)
        errors = (
            self.renderer.check_expression(text) if bare else self.renderer.check(text)
        )
        if errors:
            self.add(loc, f"template {errors[0]}")
            return
        template = "{{ " + text + " }}" if bare else text
        try:
            for message in _name_problems(
                template, ids, declared, self.renderer.globals
            ):
                self.add(loc, message)
        except TemplateError as exc:
            self.add(loc, exc.error)

    def _ambiguous(self) -> None:
        for loc, slot in self.doc.walk():
            if slot.ambiguous and slot.plain and loc not in self.reported:
                value = self.doc.locate(loc)[1]
                self.add(
                    loc,
                    f"the unquoted `{slot.plain}` is read as {value!r} "
                    f"({slot.ambiguous}) by YAML 1.1 but differently by YAML 1.2: "
                    "quote it, or write the value you mean plainly",
                )


_SHAPE_ERRORS = frozenset({"missing", "extra_forbidden"})


def _friendly(err: Any) -> str:
    message = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    message = message.replace("Input should be", "must be", 1)
    return message[:1].lower() + message[1:]


def _default_problem(raw: dict[str, Any]) -> str | None:
    """Why a param's default does not fit its own definition, if it does not."""
    try:
        param = Param.model_validate({k: v for k, v in raw.items() if k != "default"})
        coerce_param(param, raw["default"], strict=True)
    except (ValidationError, ValueError) as exc:
        return None if isinstance(exc, ValidationError) else str(exc)
    return None


def _static_check(action: Action, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        return list(action.static_check(inputs))
    except Exception as exc:
        logger.warning("static check of action %s failed: %s", action.name, exc)
        return [("", f"the `{action.name}` action's check failed: {exc}")]


def _name_problems(
    template: str, ids: list[str], declared: list[str], extra: frozenset[str]
) -> list[str]:
    problems: list[str] = []
    allowed = ROOT_NAMES | extra
    for name in sorted(template_roots(template) - allowed):
        problems.append(
            f"template reads the unknown name `{name}` "
            f"(use params, ticket, steps, runbook or execution)"
            + _did_you_mean(name, sorted(ROOT_NAMES))
        )
    for name in sorted(template_references(template, "params") - set(declared)):
        problems.append(
            f"`params.{name}` is not a declared param" + _did_you_mean(name, declared)
        )
    for name in sorted(template_references(template, "steps") - set(ids)):
        hyphenated = [i for i in ids if i.startswith(name + "-")]
        hint = (
            f"; write steps['{hyphenated[0]}'] for an id with a `-`"
            if hyphenated
            else _did_you_mean(name, ids)
        )
        problems.append(f"`steps.{name}` is not a step of this runbook" + hint)
    return problems


def _model_fields(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names (aliases where set) of the model found at ``loc``."""
    target = _model_at(model, loc)
    if target is None:
        return []
    return [info.alias or name for name, info in target.model_fields.items()]


def _model_at(tp: Any, loc: Loc) -> type[BaseModel] | None:
    from typing import Annotated, Union, get_args, get_origin

    origin = get_origin(tp)
    if origin is Annotated:
        return _model_at(get_args(tp)[0], loc)
    if origin is Union or type(tp).__name__ == "UnionType":
        for member in get_args(tp):
            found = _model_at(member, loc)
            if found is not None:
                return found
        return None
    if not loc:
        return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None
    part, rest = loc[0], loc[1:]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, info in tp.model_fields.items():
            if part in (name, info.alias):
                return _model_at(info.annotation, rest)
        return None
    if origin in (list, tuple) and isinstance(part, int):
        return _model_at(get_args(tp)[0], rest)
    if origin is dict:
        return _model_at(get_args(tp)[1], rest)
    return None


# ------------------------------------------------------------------ public API


def load_runbook_text(
    text: str, source: str = "<string>", *, registry: ActionRegistry | None = None
) -> Runbook:
    """Read and check a runbook.

    Args:
        text: the file's text.
        source: the name problems are reported under (the file's path).
        registry: the actions steps may use; the installed ones by default.

    Returns:
        The validated runbook.

    Raises:
        LoadError: with every problem found, sorted by position.
    """
    if registry is None:
        from haloterm.plugins.registry import default_registry

        registry = default_registry()
    doc = _Document(source)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        doc.problem((1, 1), (), f"the file is {size} bytes; the limit is {MAX_BYTES}")
        raise LoadError(doc.problems)
    doc.read(text)
    runbook = None
    if not doc.problems and not isinstance(doc.data, dict):
        doc.problem(
            doc.root,
            (),
            "the top level must be a mapping of runbook fields (name, steps, ...)",
        )
    elif isinstance(doc.data, dict) and doc.complete:
        runbook = _Checker(doc, registry, Renderer()).run()
        if runbook is not None:
            _self_reference(doc, runbook, registry)
    if doc.problems or runbook is None:
        unique = dict.fromkeys(doc.problems)
        problems = sorted(unique, key=lambda p: (p.line, p.column, p.path, p.message))
        raise LoadError(problems)
    return runbook


def load_runbook_file(
    path: str | Path, *, registry: ActionRegistry | None = None
) -> tuple[Runbook, str]:
    """Read and check a runbook file.

    Returns:
        The validated runbook and the file's text (to store as the version's source).

    Raises:
        LoadError: the file is too big, not UTF-8, or has problems; all are listed.
        OSError: the file cannot be read.
    """
    path = Path(path)
    source = str(path)
    with path.open("rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        message = f"the file is over {MAX_BYTES} bytes"
        raise LoadError([Problem(source, 1, 1, "", message)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - before.rfind(b"\n")
        message = f"not UTF-8 text (byte {data[exc.start]:#04x})"
        raise LoadError([Problem(source, line, column, "", message)]) from None
    return load_runbook_text(text, source, registry=registry), text


def child_references(
    runbook: Runbook, registry: ActionRegistry
) -> list[tuple[str, str]]:
    """The runbooks a runbook may start as children, known before it runs.

    Both ``runbook`` steps with a literal name and ``on_failure: {run: ...}`` count.

    Returns:
        ``(step id, runbook name)`` pairs, in step order.
    """
    found: list[tuple[str, str]] = []
    for step in runbook.steps:
        if step.action in registry:
            try:
                names = registry.get(step.action).child_runbooks(step.with_)
            except Exception as exc:
                logger.warning("child_runbooks of %s failed: %s", step.action, exc)
                names = []
            found.extend((step.id, name) for name in names)
        if isinstance(step.on_failure, RunRunbook):
            found.append((step.id, step.on_failure.run))
    return found


def find_cycle(
    root: Runbook,
    lookup: Callable[[str], Runbook | None],
    registry: ActionRegistry,
) -> list[str] | None:
    """Find a chain of child runbooks that leads back to a runbook on it.

    Args:
        root: the runbook being saved; it stands in for any stored version of
            itself.
        lookup: the stored runbook of a name, or None when there is none.
        registry: the actions, to ask ``runbook``-like steps for their children.

    Returns:
        The chain, like ``["a", "b", "a"]``, or None when there is no cycle. A
        diamond (two paths to one runbook) is not a cycle.
    """

    def children(runbook: Runbook) -> Iterator[str]:
        return iter([name for _, name in child_references(runbook, registry)])

    path = [root.name]
    stack = [children(root)]
    done: set[str] = set()
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            done.add(path.pop())
            continue
        if child in path:
            return path[path.index(child) :] + [child]
        if child in done:
            continue
        found = root if child == root.name else lookup(child)
        if found is None:
            done.add(child)
            continue
        path.append(child)
        stack.append(children(found))
    return None


def _self_reference(doc: _Document, runbook: Runbook, registry: ActionRegistry) -> None:
    for step_id, name in child_references(runbook, registry):
        if name == runbook.name:
            index = runbook.step_index(step_id)
            mark = doc.locate(("steps", index))[0]
            doc.problem(
                mark,
                ("steps", index),
                f"cycle: {name} → {name} (the runbook runs itself)",
            )
