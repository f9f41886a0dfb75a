"""The action registry: entry-point discovery, broken plug-ins, lookups."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from haloterm.plugins.registry import (
    ActionRegistry,
    BrokenPlugin,
    UnknownAction,
    default_registry,
)
from tests.format.actions import ALL, HttpAction, ShellAction

PLUGIN = """
from __future__ import annotations
from typing import Any
from haloterm.plugins.base import Action, ActionInputs, StepResult


class PingInputs(ActionInputs):
    host: str


class Ping(Action):
    name = "ping"
    Inputs = PingInputs

    async def run(self, inputs: Any, ctx: Any) -> StepResult:
        return StepResult.ok()


class Abstract(Action):
    name = "abstract"
    Inputs = PingInputs


class Misnamed(Ping):
    name = "pong"


class NotAnAction:
    name = "plain"
"""


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed distribution whose entry points mix good and broken actions."""
    module = f"fakeplug_{abs(hash(tmp_path)) % 10**8}"
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{module}.py").write_text(PLUGIN)
    info = site / "fakeplug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [haloterm.test_actions]
            ping = {module}:Ping
            abstract = {module}:Abstract
            pang = {module}:Misnamed
            plain = {module}:NotAnAction
            missing = {module}_gone:Thing
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    yield module
    sys.modules.pop(module, None)


def test_discover_keeps_good_plugins_and_records_broken_ones(
    plugin_dist: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="haloterm.plugins.registry"):
        registry = ActionRegistry.discover("haloterm.test_actions")

    assert registry.names() == ["ping"]
    assert "ping" in registry and "pong" not in registry
    broken = {b.name: b for b in registry.broken}
    assert sorted(broken) == ["abstract", "missing", "pang", "plain"]
    assert broken["missing"].value == f"{plugin_dist}_gone:Thing"
    assert broken["missing"].error.startswith("ModuleNotFoundError")
    assert "abstract method" in broken["abstract"].error
    assert "not a subclass" in broken["plain"].error
    assert "`pang` names an action called `pong`" in broken["pang"].error
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert all("is broken" in r.getMessage() for r in warnings)


def test_a_broken_plugin_explains_itself_on_lookup(plugin_dist: str) -> None:
    registry = ActionRegistry.discover("haloterm.test_actions")
    with pytest.raises(UnknownAction) as caught:
        registry.get("missing")
    assert "could not be loaded: ModuleNotFoundError" in str(caught.value)


def test_discovering_an_empty_group_gives_an_empty_registry() -> None:
    registry = ActionRegistry.discover("haloterm.no_such_group")
    assert registry.names() == [] and registry.broken == [] and len(registry) == 0


def test_from_classes_instantiates_each_once() -> None:
    registry = ActionRegistry.from_classes(ALL)
    assert registry.names() == ["http", "runbook", "shell", "wait"]
    assert isinstance(registry.get("shell"), ShellAction)
    assert registry.get("shell") is registry.get("shell")
    assert [a.name for a in registry] == registry.names()


def test_from_classes_refuses_duplicates_and_non_actions() -> None:
    with pytest.raises(ValueError, match="two actions are named 'shell'"):
        ActionRegistry.from_classes([ShellAction, ShellAction])
    with pytest.raises(TypeError, match="not a subclass"):
        ActionRegistry.from_classes([int])  # type: ignore[list-item]


def test_unknown_action_is_a_key_error_with_a_suggestion() -> None:
    registry = ActionRegistry.from_classes([ShellAction, HttpAction])
    with pytest.raises(KeyError) as caught:
        registry.get("htttp")
    assert isinstance(caught.value, UnknownAction)
    assert str(caught.value) == "unknown action `htttp`; did you mean `http`?"
    with pytest.raises(UnknownAction, match=r"\(known: http, shell\)"):
        registry.get("zzz")


def test_broken_reason_names_the_error() -> None:
    registry = ActionRegistry([], [BrokenPlugin("ssh", "m:Ssh", "ImportError: x")])
    assert registry.broken_reason("ssh") == "ImportError: x"
    assert registry.broken_reason("shell") is None


def test_default_registry_is_discovered_once() -> None:
    assert default_registry() is default_registry()
