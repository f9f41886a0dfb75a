"""Batches step output: into the store first, then onto the bus, every few tens of ms.

Steps never wait on the store or on subscribers: they hand lines over and go on. The
pump commits a batch, then publishes it, so a console never shows a line that a crash
would lose.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from haloterm.engine.events import EventBus, LogBatch, LogLine

if TYPE_CHECKING:
    from haloterm.storage import Store

logger = logging.getLogger(__name__)

BATCH_SECONDS = 0.03
MAX_PENDING_LIVE = 100_000
"""Live-only lines kept for the next publish; beyond it the oldest are dropped and a
marker line says how many (they were never meant to be stored, and the step's output
file keeps them all)."""


class LogPump:
    """Collects log lines from running steps and flushes them in batches.

    Args:
        store: where stored lines go.
        bus: where every line is published after its batch is committed.
    """

    def __init__(self, store: Store, bus: EventBus) -> None:
        self._store = store
        self._bus = bus
        self._stored: list[LogLine] = []
        self._live: list[LogLine] = []
        self._dropped: dict[tuple[int, str, str], tuple[int, int]] = {}
        """(execution, step, host) -> (first dropped seq, lines dropped)."""
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None

    def add(self, lines: list[LogLine]) -> None:
        """Queue lines to be stored and published."""
        self._stored.extend(lines)
        self._ensure_running()

    def add_live(self, lines: list[LogLine]) -> None:
        """Queue lines to be published only (past a step's stored head)."""
        self._live.extend(lines)
        if len(self._live) > MAX_PENDING_LIVE:
            cut = len(self._live) - MAX_PENDING_LIVE
            for line in self._live[:cut]:
                key = (line.execution_id, line.step_id, line.host)
                first, count = self._dropped.get(key, (line.seq, 0))
                self._dropped[key] = (first, count + 1)
            del self._live[:cut]
        self._ensure_running()

    async def flush(self) -> None:
        """Store and publish everything queued so far."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            stored, self._stored = self._stored, []
            live, self._live = self._live, []
            live = self._gap_markers() + live
            if stored:
                self._store.append_logs(stored)
                await self._store.call(self._store.flush)
            self._publish(stored, live)

    def _gap_markers(self) -> list[LogLine]:
        """One line per step whose live lines were dropped, saying how many."""
        markers = []
        for (execution_id, step_id, host), (first, count) in self._dropped.items():
            markers.append(
                LogLine(
                    execution_id=execution_id,
                    step_id=step_id,
                    host=host,
                    stream="info",
                    seq=-first,  # unique, and never a real line's number
                    at=datetime.now(UTC),
                    text=f"… {count:,} lines not shown live (the step's output "
                    "file keeps them all)",
                )
            )
        self._dropped.clear()
        return markers

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._task = loop.create_task(self._drain(), name="log-pump")

    async def _drain(self) -> None:
        while self._stored or self._live:
            await asyncio.sleep(BATCH_SECONDS)
            try:
                await self.flush()
            except Exception:
                logger.exception("could not store a batch of log lines")

    def _publish(self, stored: list[LogLine], live: list[LogLine]) -> None:
        by_execution: dict[int, list[LogLine]] = defaultdict(list)
        for line in sorted([*stored, *live], key=lambda x: x.seq) if live else stored:
            by_execution[line.execution_id].append(line)
        for execution_id, lines in by_execution.items():
            self._bus.publish(LogBatch(execution_id, lines))
