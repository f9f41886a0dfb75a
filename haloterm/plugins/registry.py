"""The actions steps can use, found through the ``haloterm.actions`` entry points.

Built-in actions register exactly like third-party ones. A plug-in that fails to
import, is not an :class:`~haloterm.plugins.base.Action`, or cannot be instantiated
never stops haloterm: it is recorded as broken, logged once, and listed by
``haloterm actions``; a step that names it fails to load with that reason.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from haloterm.plugins.base import Action, ActionInputs

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "haloterm.actions"


@dataclass(frozen=True)
class BrokenPlugin:
    """An action plug-in that could not be used.

    Attributes:
        name: the entry point's name (the action name it meant to provide).
        value: the entry point's target, ``module:Class``.
        error: why it is unusable, one line.
    """

    name: str
    value: str
    error: str


class UnknownAction(KeyError):
    """No action has this name; the message suggests the closest one."""

    def __init__(self, name: str, known: Iterable[str], broken: str | None = None):
        self.name = name
        self.known = sorted(known)
        self.message = _unknown_message(name, self.known, broken)
        super().__init__(name)

    def __str__(self) -> str:
        return self.message


def _unknown_message(name: str, known: list[str], broken: str | None) -> str:
    if broken is not None:
        return f"action `{name}` is installed but could not be loaded: {broken}"
    text = f"unknown action `{name}`"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"{text}; did you mean `{close[0]}`?"
    if known:
        return f"{text} (known: {', '.join(known)})"
    return text


class ActionRegistry:
    """A set of actions by name, each instantiated once, plus the broken plug-ins."""

    def __init__(
        self, actions: Iterable[Action] = (), broken: Iterable[BrokenPlugin] = ()
    ) -> None:
        """Build a registry from ready instances.

        Raises:
            ValueError: two actions share a name.
        """
        self._actions: dict[str, Action] = {}
        for action in actions:
            if action.name in self._actions:
                raise ValueError(f"two actions are named {action.name!r}")
            self._actions[action.name] = action
        self._broken = list(broken)

    @classmethod
    def discover(cls, group: str = ENTRY_POINT_GROUP) -> ActionRegistry:
        """Load every entry point of ``group``; never raises for a bad plug-in."""
        actions: dict[str, Action] = {}
        broken: list[BrokenPlugin] = []
        for entry in sorted(entry_points(group=group), key=lambda e: e.name):
            try:
                action = _load(entry)
                if action.name in actions:
                    raise TypeError(f"another plug-in already provides `{action.name}`")
            except Exception as exc:
                problem = BrokenPlugin(entry.name, entry.value, _one_line(exc))
                logger.warning(
                    "action plug-in %s (%s) is broken: %s",
                    problem.name,
                    problem.value,
                    problem.error,
                )
                broken.append(problem)
                continue
            actions[action.name] = action
        logger.debug("actions: %s", ", ".join(sorted(actions)) or "none")
        return cls(actions.values(), broken)

    @classmethod
    def from_classes(cls, classes: Iterable[type[Action]]) -> ActionRegistry:
        """A registry of the given action classes, each instantiated once.

        Raises:
            TypeError: a class is not a concrete action.
            ValueError: two classes share a name.
        """
        return cls(_instantiate(klass) for klass in classes)

    def get(self, name: str) -> Action:
        """The action called ``name``.

        Raises:
            UnknownAction: there is none; the message says why and suggests a name.
        """
        try:
            return self._actions[name]
        except KeyError:
            raise UnknownAction(name, self._actions, self.broken_reason(name)) from None

    def names(self) -> list[str]:
        """The usable action names, sorted."""
        return sorted(self._actions)

    @property
    def broken(self) -> list[BrokenPlugin]:
        """Plug-ins that could not be loaded, in entry-point order."""
        return list(self._broken)

    def broken_reason(self, name: str) -> str | None:
        """Why the plug-in meant to provide ``name`` is broken, if it is."""
        for plugin in self._broken:
            if plugin.name == name:
                return plugin.error
        return None

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._actions)


def _load(entry: EntryPoint) -> Action:
    action = _instantiate(entry.load())
    if action.name != entry.name:
        raise TypeError(
            f"entry point `{entry.name}` names an action called `{action.name}`"
        )
    return action


def _instantiate(klass: object) -> Action:
    if not (isinstance(klass, type) and issubclass(klass, Action)):
        raise TypeError(f"{klass!r} is not a subclass of haloterm's Action")
    if inspect.isabstract(klass):
        raise TypeError(f"{klass.__name__} does not implement every abstract method")
    name = getattr(klass, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{klass.__name__} has no `name`")
    inputs = getattr(klass, "Inputs", None)
    if not (isinstance(inputs, type) and issubclass(inputs, ActionInputs)):
        raise TypeError(f"{klass.__name__}.Inputs is not an ActionInputs model")
    return klass()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@functools.cache
def default_registry() -> ActionRegistry:
    """The registry of installed actions, discovered once per process."""
    return ActionRegistry.discover()
