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

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from haloterm.engine.templates import Renderer
from haloterm.loader.checks import Checker, child_references
from haloterm.loader.problems import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    LoadError,
    Problem,
    format_path,
)
from haloterm.loader.reading import Document
from haloterm.models import Runbook, RunRunbook

if TYPE_CHECKING:
    from haloterm.plugins.registry import ActionRegistry

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "LoadError",
    "Problem",
    "child_references",
    "cycle_problem",
    "find_cycle",
    "load_runbook_file",
    "reference_problem",
    "load_runbook_text",
]

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
    doc = Document(source)
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
        runbook = Checker(doc, registry, Renderer()).run()
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


def cycle_problem(
    text: str, source: str, runbook: Runbook, registry: ActionRegistry, cycle: list[str]
) -> Problem:
    """A cycle found by :func:`find_cycle`, placed on the field through which
    ``runbook`` enters it: the next link when the cycle runs through it, else the
    cycle's start."""
    entry = cycle[1] if cycle[0] == runbook.name else cycle[0]
    message = f"cycle: {' → '.join(cycle)}"
    return reference_problem(text, source, runbook, registry, entry, message)


def reference_problem(
    text: str,
    source: str,
    runbook: Runbook,
    registry: ActionRegistry,
    child: str,
    message: str,
) -> Problem:
    """A problem placed on the field of the step that names ``child``: its
    ``with.runbook``, or its ``on_failure.run``.

    Args:
        text: the file's text, as loaded.
        source: the file's name.
        runbook: the runbook loaded from ``text``.
        registry: the actions, to find which step refers to ``child``.
        child: the runbook referred to (the first step naming it is the place;
            with none, the ``steps`` key).
        message: what is wrong.
    """
    doc = Document(source)
    doc.read(text)
    references = child_references(runbook, registry)
    step_id = next((step for step, name in references if name == child), None)
    if step_id is None:
        line, column = doc.locate(("steps",), key=True)[0]
        return Problem(source, line, column, "steps", message)
    index = runbook.step_index(step_id)
    failure = runbook.steps[index].on_failure
    if isinstance(failure, RunRunbook) and failure.run == child:
        loc: tuple[str | int, ...] = ("steps", index, "on_failure", "run")
    else:
        loc = ("steps", index, "with", "runbook")
    line, column = doc.locate(loc)[0]
    return Problem(source, line, column, format_path(loc), message)


def _self_reference(doc: Document, runbook: Runbook, registry: ActionRegistry) -> None:
    for step_id, name in child_references(runbook, registry):
        if name == runbook.name:
            index = runbook.step_index(step_id)
            mark = doc.locate(("steps", index))[0]
            doc.problem(
                mark,
                ("steps", index),
                f"cycle: {name} → {name} (the runbook runs itself)",
            )
