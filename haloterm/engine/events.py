"""Events the engine publishes after each committed change, and the bus carrying them.

Every event describes a change that is already in the store: a subscriber that reads
the store after an event sees at least that change. The bus lives in one asyncio loop;
other threads publish through :meth:`EventBus.publish_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogLine:
    """One line of step output (or of haloterm's own notes on a step).

    ``text`` is masked and decoded; ANSI sequences are kept raw and are sanitised by
    whoever displays it.
    """

    execution_id: int
    step_id: str
    host: str
    stream: str
    """``stdout``, ``stderr`` or ``info`` (haloterm's own lines)."""
    seq: int
    """Position within the execution's log, increasing."""
    at: datetime
    text: str


@dataclass(frozen=True)
class ExecutionChanged:
    execution_id: int
    runbook: str
    status: str
    ticket_id: int | None = None
    parent_id: int | None = None
    current_step: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class StepChanged:
    execution_id: int
    step_id: str
    host: str
    status: str
    reason: str | None = None
    attempts: int = 0
    exit_code: int | None = None
    signal: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class LogBatch:
    execution_id: int
    lines: list[LogLine] = field(default_factory=list)


@dataclass(frozen=True)
class ApprovalChanged:
    execution_id: int
    step_id: str
    status: str
    """``waiting``, ``approved``, ``rejected`` or ``timed_out``."""
    decided_by: str | None = None


@dataclass(frozen=True)
class TicketChanged:
    ticket_id: int
    kind: str
    """``created``, ``updated``, ``status_changed``, ``priority_changed``, ``note``."""


@dataclass(frozen=True)
class Notice:
    """A message for every open console (a ``notify`` toast, a lease change)."""

    text: str
    severity: str = "information"
    title: str | None = None


Event = (
    ExecutionChanged | StepChanged | LogBatch | ApprovalChanged | TicketChanged | Notice
)
Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of engine events to in-process subscribers (the console, the CLI).

    Subscribers are plain callables run in the bus's loop; they must be quick and must
    not raise (a raising subscriber is logged and kept).
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Name the loop that :meth:`publish_threadsafe` hands events to."""
        self._loop = loop

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it again."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver an event to every subscriber, in the calling (loop) thread."""
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                logger.exception("event subscriber %r failed", subscriber)

    def publish_threadsafe(self, event: Event) -> None:
        """Deliver an event from another thread through the bound loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.publish, event)
        except RuntimeError:
            logger.debug("event loop closed; dropped %s", type(event).__name__)
