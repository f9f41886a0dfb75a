"""Child runbooks: cycles across the store (CASES C21)."""

from __future__ import annotations

import pytest

from haloterm.loader import child_references, find_cycle, load_runbook_text
from haloterm.models import Runbook
from haloterm.plugins.registry import ActionRegistry


def runbook(name: str, *children: str, on_failure: str | None = None) -> str:
    steps = [
        f"  - {{id: call-{i}, action: runbook, with: {{runbook: {child}}}}}"
        for i, child in enumerate(children)
    ]
    steps.append("  - {id: work, action: shell, with: {command: ls}}")
    if on_failure:
        steps[-1] = steps[-1][:-1] + f", on_failure: {{run: {on_failure}}}}}"
    return f"name: {name}\nsteps:\n" + "\n".join(steps) + "\n"


class Store:
    """A stand-in for the store's runbook lookup: a dict of loaded runbooks."""

    def __init__(self, registry: ActionRegistry, **texts: str) -> None:
        self.runbooks = {
            name: load_runbook_text(text, name, registry=registry)
            for name, text in texts.items()
        }
        self.asked: list[str] = []

    def lookup(self, name: str) -> Runbook | None:
        self.asked.append(name)
        return self.runbooks.get(name)


def test_two_runbooks_calling_each_other_is_a_cycle(registry: ActionRegistry) -> None:
    store = Store(registry, b=runbook("b", "a"))
    a = load_runbook_text(runbook("a", "b"), registry=registry)
    assert find_cycle(a, store.lookup, registry) == ["a", "b", "a"]


def test_the_new_version_stands_in_for_the_stored_one(
    registry: ActionRegistry,
) -> None:
    """Saving a new `a` that no longer calls `b` is fine, whatever the store holds."""
    store = Store(registry, a=runbook("a", "b"), b=runbook("b", "a"))
    new_a = load_runbook_text(runbook("a"), registry=registry)
    assert find_cycle(new_a, store.lookup, registry) is None
    assert "a" not in store.asked


def test_diamond_is_allowed_and_each_runbook_visited_once(
    registry: ActionRegistry,
) -> None:
    store = Store(
        registry,
        y=runbook("y", "w"),
        z=runbook("z", "w"),
        w=runbook("w"),
    )
    x = load_runbook_text(runbook("x", "y", "z"), registry=registry)
    assert find_cycle(x, store.lookup, registry) is None
    assert sorted(store.asked) == ["w", "y", "z"]


def test_longer_cycle_through_on_failure_run(registry: ActionRegistry) -> None:
    store = Store(
        registry,
        b=runbook("b", "c"),
        c=runbook("c", on_failure="a"),
    )
    a = load_runbook_text(runbook("a", "b"), registry=registry)
    assert find_cycle(a, store.lookup, registry) == ["a", "b", "c", "a"]


def test_cycle_below_the_root_is_reported(registry: ActionRegistry) -> None:
    store = Store(registry, b=runbook("b", "c"), c=runbook("c", "b"))
    a = load_runbook_text(runbook("a", "b"), registry=registry)
    assert find_cycle(a, store.lookup, registry) == ["b", "c", "b"]


def test_missing_and_templated_children_are_not_cycles(
    registry: ActionRegistry,
) -> None:
    text = """name: c
params: {next: {type: string, default: c}}
steps:
  - {id: loop, action: runbook, with: {runbook: "{{ params.next }}"}}
  - {id: gone, action: runbook, with: {runbook: not-stored}}
"""
    c = load_runbook_text(text, registry=registry)
    assert child_references(c, registry) == [("gone", "not-stored")]
    assert find_cycle(c, Store(registry).lookup, registry) is None


def test_child_references_list_steps_and_branches(registry: ActionRegistry) -> None:
    a = load_runbook_text(runbook("a", "b", on_failure="rollback"), registry=registry)
    assert child_references(a, registry) == [("call-0", "b"), ("work", "rollback")]


@pytest.mark.parametrize("depth", [50, 400])
def test_long_chains_do_not_recurse(registry: ActionRegistry, depth: int) -> None:
    texts = {f"r{i}": runbook(f"r{i}", f"r{i + 1}") for i in range(1, depth)}
    texts[f"r{depth}"] = runbook(f"r{depth}", "r0")
    store = Store(registry, **texts)
    root = load_runbook_text(runbook("r0", "r1"), registry=registry)
    cycle = find_cycle(root, store.lookup, registry)
    assert cycle is not None and len(cycle) == depth + 2
    assert cycle[0] == cycle[-1] == "r0"
