"""Everything a front end needs, built once: settings, store, actions and engine.

The console, the headless commands and the tests all build haloterm through
:meth:`Services.open`, so they run the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from haloterm.config import (
    ConfigError,
    Settings,
    current_operator,
    db_path,
    load_secrets,
    load_settings,
)
from haloterm.engine.runner import Engine, utc_now
from haloterm.loader import load_runbook_file
from haloterm.logsetup import LOG_MASKER
from haloterm.plugins.registry import ActionRegistry, default_registry
from haloterm.storage import SavedVersion, Store
from haloterm.storage.seed import seed_if_empty

if TYPE_CHECKING:
    from haloterm.automation.service import Automation

logger = logging.getLogger(__name__)

EXAMPLES = Path(__file__).parent / "examples"
CANCEL_POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 2.0
OWNER_TTL = 10.0
"""An owner whose heartbeat is older than this is dead; its runs become interrupted."""
CHECKPOINT_SECONDS = 300.0
"""How often the heartbeat loop runs a PASSIVE WAL checkpoint."""


@dataclass
class Services:
    """The parts of a haloterm process, wired together."""

    settings: Settings
    store: Store
    registry: ActionRegistry
    engine: Engine
    operator: str
    clock: Callable[[], datetime]
    owner_id: str
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    automation: Automation | None = None
    """Rules and schedules, when :meth:`start` was asked to run them."""
    _config_stamp: tuple[int, int] | None = None

    @classmethod
    def open(
        cls,
        db: Path | None = None,
        *,
        settings: Settings | None = None,
        clock: Callable[[], datetime] | None = None,
        operator: str | None = None,
        seed: bool = True,
        registry: ActionRegistry | None = None,
    ) -> Services:
        """Open (and on first use create and seed) the store, and build the engine.

        Raises:
            haloterm.config.ConfigError: the config or secrets file is invalid.
            haloterm.storage.StoreError: the store cannot be opened.
        """
        settings = settings or load_settings()
        operator = operator or current_operator(settings)
        clock = clock or utc_now
        path = db_path(settings, db)
        store = Store.open(path, clock=clock)
        registry = registry or default_registry()
        if seed:
            seed_if_empty(store, EXAMPLES, registry=registry)
        secrets = load_secrets(settings)
        for value in secrets.values():
            LOG_MASKER.add(value)
        owner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        engine = Engine(
            store,
            registry=registry,
            settings=settings,
            clock=clock,
            owner_id=owner_id,
            secrets=secrets,
        )
        engine.spool_dir = path.parent / "output"
        engine.spool_dir.mkdir(parents=True, exist_ok=True)
        interrupted = store.interrupt_dead_owners(OWNER_TTL, actor="haloterm")
        if interrupted:
            logger.warning("marked interrupted: executions %s", interrupted)
        return cls(
            settings=settings,
            store=store,
            registry=registry,
            engine=engine,
            operator=operator,
            clock=clock,
            owner_id=owner_id,
            _config_stamp=_file_stamp(settings.source),
        )

    async def start(self, *, automation: bool = False) -> None:
        """Register this process as an owner of runs and keep its heartbeat going.

        Args:
            automation: also compete for the automation lease and, while holding
                it, fire ticket-event rules and schedules.
        """
        self.engine.bus.bind(asyncio.get_running_loop())
        await self.store.call(
            self.store.register_owner,
            self.owner_id,
            pid=os.getpid(),
            hostname=socket.gethostname(),
            user=self.operator,
        )
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        self._tasks.append(asyncio.create_task(self._take_cancels(), name="cancels"))
        if automation:
            from haloterm.automation.service import Automation

            self.automation = Automation(
                self.store, self.engine, holder=self.owner_id, user=self.operator
            )
            await self.automation.start()

    async def stop(self) -> None:
        """Stop owning runs and close the store. Safe to call twice."""
        if self.automation is not None:
            await self.automation.stop()
            self.automation = None
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.engine.shutdown()
        with contextlib.suppress(Exception):
            await self.store.call(self.store.remove_owner, self.owner_id)
        self.store.close()

    async def _take_cancels(self) -> None:
        """Cancels asked for from other consoles reach the runs owned here."""
        while True:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            if not self.engine.active:
                continue
            try:
                await self.engine.take_cancels()
            except Exception:
                logger.exception("could not take cancel requests")

    async def _heartbeat(self) -> None:
        from haloterm.storage.housekeeping import checkpoint

        loop = asyncio.get_running_loop()
        next_checkpoint = loop.time() + CHECKPOINT_SECONDS
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.store.call(self.store.heartbeat, self.owner_id)
                await self.store.call(
                    self.store.interrupt_dead_owners, OWNER_TTL, actor="haloterm"
                )
                if loop.time() >= next_checkpoint:
                    next_checkpoint = loop.time() + CHECKPOINT_SECONDS
                    await self.store.call(checkpoint, self.store)
                await asyncio.to_thread(self.reload_operators)
            except Exception:
                logger.exception("heartbeat failed")

    def reload_operators(self) -> bool:
        """Take operators and roles from the config file again when it changed.

        A role granted or taken away reaches a console or worker that is already
        running within a heartbeat, not at its next start. Only ``operators`` is
        taken: the rest of the config stays as the process started with it. A file
        that no longer reads keeps the roles as they were (and says so in the log).

        Returns:
            Whether the roles were replaced.
        """
        path = self.settings.source
        stamp = _file_stamp(path)
        if path is None or stamp is None or stamp == self._config_stamp:
            return False
        self._config_stamp = stamp
        try:
            fresh = load_settings(path)
        except ConfigError as exc:
            logger.warning("config changed but does not read; roles kept: %s", exc)
            return False
        if fresh.operators == self.settings.operators:
            return False
        self.settings.operators = fresh.operators
        logger.info("operators and roles reloaded from %s", path)
        return True

    def import_runbook(self, path: Path) -> SavedVersion:
        """Load, validate (cycles across the store included) and save a runbook file.

        Raises:
            haloterm.loader.LoadError: the file does not load; nothing is stored.
        """
        from haloterm.loader import LoadError, cycle_problem, find_cycle

        runbook, text = load_runbook_file(path, registry=self.registry)

        def lookup(name: str):  # type: ignore[no-untyped-def]
            if name == runbook.name:
                return runbook
            stored = self.store.get_runbook(name)
            return stored.runbook if stored else None

        cycle = find_cycle(runbook, lookup, self.registry)
        if cycle:
            problem = cycle_problem(text, str(path), runbook, self.registry, cycle)
            raise LoadError([problem])
        return self.store.save_runbook(runbook, text, author=self.operator)


def _file_stamp(path: Path | None) -> tuple[int, int] | None:
    """When a file last changed and its size, to notice an edit; None if missing."""
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size
