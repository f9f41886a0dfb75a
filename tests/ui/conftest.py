"""Console fixtures: services on a tmp store, frozen clock, bundled examples seeded."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from haloterm.config import Operator, Settings
from haloterm.services import EXAMPLES, Services
from tests.identity import with_harness

FROZEN = datetime(2025, 6, 3, 15, 0, 0, tzinfo=UTC)
"""The instant every console test runs at."""


def frozen_clock() -> datetime:
    return FROZEN


@pytest.fixture
def ui_settings() -> Settings:
    """alice is on call; bob leads and may approve ``role:lead`` steps."""
    return Settings(
        operators=with_harness(
            alice=Operator(roles=["oncall"]), bob=Operator(roles=["lead", "oncall"])
        )
    )


@pytest.fixture
def services(tmp_path: Path, ui_settings: Settings) -> Iterator[Services]:
    """Services on ``tmp_path/s.db``, seeded, with a frozen clock, as alice."""
    built = Services.open(tmp_path / "s.db", settings=ui_settings, clock=frozen_clock)
    _ensure_examples(built)
    yield built
    built.store.close()


def _ensure_examples(services: Services) -> None:
    # Seeding skips a file it cannot load (logged); the console tests need them all.
    for path in sorted((EXAMPLES / "runbooks").glob("*.yaml")):
        if services.store.get_runbook(path.stem) is None:
            services.import_runbook(path)


@pytest.fixture
def open_services(
    tmp_path: Path, ui_settings: Settings
) -> Iterator[Callable[..., Services]]:
    """Open more services on the same store (another console, another operator)."""
    opened: list[Services] = []

    def make(operator: str = "alice", *, seed: bool = False) -> Services:
        built = Services.open(
            tmp_path / "s.db",
            settings=ui_settings,
            clock=frozen_clock,
            operator=operator,
            seed=seed,
        )
        opened.append(built)
        return built

    yield make
    for built in opened:
        built.store.close()


async def wait_for(
    pilot: Pilot[None],
    predicate: Callable[[], bool],
    *,
    rounds: int = 300,
    what: str = "condition",
) -> None:
    """Let the app work until ``predicate()`` holds (workers, timers, engine tasks)."""
    for _ in range(rounds):
        with contextlib.suppress(WorkerCancelled):
            # An exclusive worker replaced by a newer one counts as cancelled.
            await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if predicate():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"timed out waiting for {what}")


WaitFor = Callable[..., Awaitable[None]]
