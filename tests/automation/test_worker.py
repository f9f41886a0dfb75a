"""``haloterm worker`` as real processes on one store: one lease, each slot and each
rule fired once, takeover after SIGKILL (C18), a clean drain on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from haloterm.services import Services
from haloterm.storage import Store, TicketQuery
from tests.engine.conftest import make_settings

RULED = """
name: ruled
params:
  secs: {type: string, default: "0"}
triggers:
  - on: ticket.created
    match: {category: web}
    params: {secs: "{{ ticket.fields.secs }}"}
steps:
  - id: s
    action: shell
    with: {command: "sleep {{ params.secs }}"}
"""

TICKING = """
name: ticking
triggers:
  - schedule: {every: 1s}
steps:
  - id: s
    action: shell
    with: {command: "true"}
"""


def _wait(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    svc = Services.open(path, settings=make_settings(), seed=False)
    for i, text in enumerate((RULED, TICKING)):
        file = tmp_path / f"rb{i}.yaml"
        file.write_text(text, encoding="utf-8")
        svc.import_runbook(file)
    svc.store.close()
    return path


@pytest.fixture
def spawn(tmp_path: Path, db: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    logs: list[IO[str]] = []

    def start(name: str) -> subprocess.Popen[str]:
        env = {**os.environ, "HALOTERM_DB": str(db), "HALOTERM_OPERATOR": name}
        log = (tmp_path / f"{name}.log").open("w")
        logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "haloterm", "worker", "--drain-timeout", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    for log in logs:
        log.close()


def _holder_pid(store: Store) -> int | None:
    holder = store.lease_holder()
    return holder.pid if holder is not None and holder.alive else None


def test_two_workers_fire_once_and_the_survivor_takes_over(
    db: Path, spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    first = spawn("one")
    with Store.open(db) as store:
        _wait("the first worker's lease", lambda: _holder_pid(store) == first.pid)
        second = spawn("two")
        _wait(
            "the second worker",
            lambda: len(store.live_owner_ids()) >= 2,
        )
        ticket = store.create_ticket(
            title="slow", category="web", fields={"secs": "30"}, actor="alice"
        )
        _wait(
            "the rule's run",
            lambda: any(f.status == "started" for f in store.rule_firings()),
        )
        # Let a few one-second slots pass with both workers up.
        _wait("five slots", lambda: len(store.schedule_runs("ticking#0")) >= 5)
        runs = store.schedule_runs("ticking#0", limit=1000)
        assert {r.holder for r in runs} == {store.lease_holder().holder}  # type: ignore[union-attr]
        assert len({r.slot_key for r in runs}) == len(runs)
        (slow,) = store.list_executions(ticket_id=ticket)

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        _wait("the takeover", lambda: _holder_pid(store) == second.pid, timeout=10)
        _wait(
            "the dead worker's run to be interrupted",
            lambda: store.get_execution(slow.id).status.value == "interrupted",  # type: ignore[union-attr]
        )
        store.create_ticket(
            title="fast", category="web", fields={"secs": "0"}, actor="alice"
        )
        _wait("the second rule run", lambda: len(store.rule_firings()) == 2)
        _wait(
            "both firings started",
            lambda: all(f.status == "started" for f in store.rule_firings()),
        )
        assert len(store.list_executions(runbook="ruled")) == 2

        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0
        assert _holder_pid(store) is None
        ticking = store.list_executions(runbook="ticking", limit=10_000)
        started = [
            r
            for r in store.schedule_runs("ticking#0", limit=10_000)
            if r.status == "started"
        ]
        assert len(ticking) == len(started)
        assert len({e.id for e in ticking}) == len({r.execution_id for r in started})


def test_a_worker_on_a_new_store_seeds_no_demo_data(tmp_path: Path) -> None:
    """The examples' tickets and rules have no place in a store run unattended."""
    fresh = tmp_path / "fresh.db"
    env = {**os.environ, "HALOTERM_DB": str(fresh)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "haloterm", "worker", "--drain-timeout", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait("the worker's store", fresh.exists)
        with Store.open(fresh) as store:
            _wait("the worker's lease", lambda: _holder_pid(store) == proc.pid)
            assert store.list_runbooks() == []
            assert store.count_tickets(TicketQuery()) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
