"""Automation on a real store in tmp_path, driven by a manual clock."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from haloterm.automation.clock import ManualClock
from haloterm.automation.service import Automation
from haloterm.services import Services
from tests.engine.conftest import make_settings

START = datetime(2025, 3, 1, 0, 0, tzinfo=UTC)

AddRunbook = Callable[[str], str]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def svc(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Services]:
    services = Services.open(
        tmp_path / "store.db", settings=make_settings(), seed=False, clock=clock
    )
    await services.start()
    yield services
    await services.stop()


@pytest.fixture
async def auto(svc: Services, clock: ManualClock) -> AsyncIterator[Automation]:
    """Automation that holds the lease, without APScheduler's thread."""
    automation = Automation(
        svc.store,
        svc.engine,
        holder=svc.owner_id,
        user="alice",
        clock=clock,
        use_thread=False,
    )
    await automation.step(force=True)
    assert automation.holding
    yield automation
    await automation.stop()


@pytest.fixture
def add_runbook(svc: Services, tmp_path: Path) -> AddRunbook:
    """Import a runbook given as YAML text; returns its name."""
    counter = iter(range(1_000_000))

    def add(text: str) -> str:
        path = tmp_path / f"runbook-{next(counter)}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return svc.import_runbook(path).name

    return add


def scheduled(name: str, schedule: str, *, step: str = "true") -> str:
    """A one-step runbook with one schedule trigger (a YAML flow mapping)."""
    return f"""
    name: {name}
    triggers:
      - schedule: {schedule}
    steps:
      - id: s
        action: shell
        with: {{command: "{step}"}}
    """
