"""Execution owners: heartbeats, and interrupting the runs of dead processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from haloterm.models import ExecutionStatus, StepRun, StepStatus
from haloterm.storage import Store
from tests.store.conftest import FakeClock


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def running(store: Store, owner: str) -> int:
    execution = store.create_execution(
        runbook="rb",
        version=1,
        params={},
        secret_params=[],
        trigger="manual",
        operator="alice",
        owner_id=owner,
        step_ids=["a", "b"],
    )
    store.update_execution(execution.id, status="running", current_step="b")
    store.save_step_run(
        StepRun(execution_id=execution.id, step_id="a", status=StepStatus.PASSED)
    )
    store.save_step_run(
        StepRun(execution_id=execution.id, step_id="b", status=StepStatus.RUNNING)
    )
    return execution.id


def test_a_dead_owner_on_this_host_is_interrupted(
    store: Store, clock: FakeClock
) -> None:
    here = socket.gethostname()
    pid = dead_pid()
    store.register_owner("dead", pid=pid, hostname=here, user="alice")
    store.register_owner("alive", pid=os.getpid(), hostname=here, user="alice")
    victim = running(store, "dead")
    survivor = running(store, "alive")
    finished = running(store, "dead")
    store.update_execution(finished, status="succeeded")

    # On this host a vanished pid is enough; a stale heartbeat is not.
    assert store.interrupt_dead_owners(10, actor="haloterm") == [victim]
    clock.advance(11)
    assert store.interrupt_dead_owners(10, actor="haloterm") == []

    execution = store.get_execution(victim)
    assert execution is not None
    assert execution.status is ExecutionStatus.INTERRUPTED
    assert execution.reason == f"owner process {pid} on {here} stopped"
    steps = {r.step_id: r for r in store.step_runs(victim)}
    assert steps["a"].status is StepStatus.PASSED
    assert (steps["b"].status, steps["b"].reason) == (StepStatus.FAILED, "interrupted")
    assert store.get_execution(survivor).status is ExecutionStatus.RUNNING  # type: ignore[union-attr]
    assert store.get_execution(finished).status is ExecutionStatus.SUCCEEDED  # type: ignore[union-attr]
    assert store.live_owner_ids(ttl=3600) == {"alive"}
    [audit] = store.list_audit(target_type="execution", target_id=victim, limit=1)
    assert (audit.action, audit.actor) == ("execution.interrupt", "haloterm")


def test_a_stale_owner_on_another_host_is_interrupted(
    store: Store, clock: FakeClock
) -> None:
    store.register_owner("remote", pid=os.getpid(), hostname="elsewhere", user="bob")
    victim = running(store, "remote")
    clock.advance(5)
    assert store.heartbeat("remote") is True
    clock.advance(8)
    assert store.interrupt_dead_owners(10, actor="haloterm") == []
    assert store.live_owner_ids(ttl=10) == {"remote"}
    clock.advance(3)
    assert store.interrupt_dead_owners(10, actor="haloterm") == [victim]
    assert store.heartbeat("remote") is False
    assert store.live_owner_ids() == set()


def test_remove_owner(store: Store) -> None:
    store.register_owner("me", pid=os.getpid(), hostname="h", user="alice")
    assert store.live_owner_ids() == {"me"}
    store.remove_owner("me")
    assert store.live_owner_ids() == set()


def test_killed_between_a_step_passing_and_the_next_starting(store: Store) -> None:
    """The run is interrupted at the next step, so a resume does not run a finished
    step again (found by bench/kill_points.py)."""
    pid = dead_pid()
    store.register_owner("dead", pid=pid, hostname=socket.gethostname(), user="a")
    victim = running(store, "dead")
    store.update_execution(victim, current_step="a")  # b not started yet
    store.save_step_run(
        StepRun(execution_id=victim, step_id="b", status=StepStatus.PENDING)
    )
    assert store.interrupt_dead_owners(10, actor="haloterm") == [victim]
    execution = store.get_execution(victim)
    assert execution is not None and execution.current_step == "b"
    steps = {r.step_id: r.status for r in store.step_runs(victim)}
    assert steps == {"a": StepStatus.PASSED, "b": StepStatus.PENDING}
