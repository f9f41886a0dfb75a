"""Services on a real store in tmp_path, and a helper to add runbooks from YAML text."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from haloterm.config import Operator, Settings
from haloterm.services import Services
from tests.identity import with_harness


def make_settings(**extra: object) -> Settings:
    """Settings with two operators: alice (no roles) and bob (lead)."""
    settings = Settings(
        operators=with_harness(alice=Operator(roles=[]), bob=Operator(roles=["lead"])),
        **extra,
    )
    return settings


AddRunbook = Callable[[str], str]


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    services = Services.open(
        tmp_path / "store.db", settings=make_settings(), seed=False
    )
    await services.start()
    yield services
    await services.stop()


@pytest.fixture
def add_runbook(svc: Services, tmp_path: Path) -> AddRunbook:
    """Import a runbook given as YAML text; returns its name."""
    counter = iter(range(1_000_000))

    def add(text: str) -> str:
        path = tmp_path / f"runbook-{next(counter)}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return svc.import_runbook(path).name

    return add
