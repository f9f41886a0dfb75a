"""Executions, step runs and stored log lines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from haloterm.engine.events import LogLine
from haloterm.models import Execution, ExecutionStatus, StepRun, StepStatus
from haloterm.storage import NotFoundError, Store
from tests.store.conftest import FakeClock

AT = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def start(store: Store, runbook: str = "rb", **kw: object) -> Execution:
    fields: dict[str, object] = {
        "runbook": runbook,
        "version": 1,
        "params": {"host": "web-1", "token": "******"},
        "secret_params": ["token"],
        "trigger": "manual",
        "operator": "alice",
        "step_ids": ["a", "b", "c"],
    }
    fields.update(kw)
    return store.create_execution(**fields)  # type: ignore[arg-type]


def test_create_execution_inserts_pending_steps_and_audit(
    store: Store, clock: FakeClock
) -> None:
    execution = start(store, ticket_id=None)
    assert execution.status is ExecutionStatus.QUEUED
    assert execution.params == {"host": "web-1", "token": "******"}
    assert execution.created_at == clock()
    runs = store.step_runs(execution.id)
    assert [(r.step_id, r.status) for r in runs] == [
        ("a", StepStatus.PENDING),
        ("b", StepStatus.PENDING),
        ("c", StepStatus.PENDING),
    ]
    [audit] = store.list_audit(target_type="execution")
    assert audit.action == "execution.create"
    assert store.get_execution(execution.id) == execution


def test_a_secret_value_is_refused_and_not_echoed(store: Store) -> None:
    with pytest.raises(ValueError, match="token") as caught:
        start(store, params={"token": "S3cr3t!pw"})
    assert "S3cr3t!pw" not in str(caught.value)
    assert store.list_executions() == []


def test_update_execution(store: Store, clock: FakeClock) -> None:
    execution = start(store)
    updated = store.update_execution(
        execution.id,
        status=ExecutionStatus.RUNNING,
        current_step="b",
        started_at=clock(),
        owner_id="me",
    )
    assert (updated.status, updated.current_step, updated.owner_id) == (
        ExecutionStatus.RUNNING,
        "b",
        "me",
    )
    assert updated.started_at == clock()
    with pytest.raises(ValueError, match="runbook"):
        store.update_execution(execution.id, runbook="other")
    with pytest.raises(ValueError):
        store.update_execution(execution.id, status="exploded")
    with pytest.raises(NotFoundError):
        store.update_execution(999, status="failed")


def test_list_and_relations(store: Store, clock: FakeClock) -> None:
    ticket_id = store.create_ticket(title="t", actor="alice")
    parent = start(store, ticket_id=ticket_id)
    clock.advance(60)
    child = start(store, runbook="child", parent_id=parent.id, parent_step="b")
    done = start(store, runbook="child")
    store.update_execution(done.id, status="succeeded")
    assert [e.id for e in store.list_executions()] == [done.id, child.id, parent.id]
    assert [e.id for e in store.list_executions(runbook="child")] == [done.id, child.id]
    assert [e.id for e in store.list_executions(status="succeeded")] == [done.id]
    assert [e.id for e in store.list_executions(status=["queued"])] == [
        child.id,
        parent.id,
    ]
    assert [e.id for e in store.list_executions(ticket_id=ticket_id)] == [parent.id]
    assert [e.id for e in store.list_executions(since=clock())] == [done.id, child.id]
    assert [e.id for e in store.list_executions(until=clock())] == [parent.id]
    assert [e.id for e in store.list_executions(before_id=child.id)] == [parent.id]
    assert [e.id for e in store.list_executions(limit=1)] == [done.id]
    assert [e.id for e in store.child_executions(parent.id)] == [child.id]
    assert [e.id for e in store.running_executions_of("child")] == [child.id]


def test_step_runs_upsert_and_order(store: Store, clock: FakeClock) -> None:
    execution = start(store)
    store.save_step_run(
        StepRun(
            execution_id=execution.id,
            step_id="b",
            host="web-2",
            status=StepStatus.FAILED,
            reason="exit 3",
            exit_code=3,
            attempts=2,
            outputs={"stdout": "x"},
            output_truncated=True,
            started_at=clock(),
            finished_at=clock(),
        )
    )
    store.save_step_run(StepRun(execution_id=execution.id, step_id="b", host="web-1"))
    store.save_step_run(
        StepRun(execution_id=execution.id, step_id="a", status=StepStatus.PASSED)
    )
    runs = store.step_runs(execution.id)
    assert [(r.step_id, r.host) for r in runs] == [
        ("a", ""),
        ("b", ""),
        ("b", "web-1"),
        ("b", "web-2"),
        ("c", ""),
    ]
    failed = runs[3]
    assert (failed.status, failed.exit_code, failed.outputs) == (
        StepStatus.FAILED,
        3,
        {"stdout": "x"},
    )
    assert failed.output_truncated and failed.finished_at == clock()
    assert runs[0].status is StepStatus.PASSED


def test_logs_by_step_host_and_seq(store: Store) -> None:
    lines = [
        LogLine(
            1, "a" if n <= 5 else "b", "web-1" if n % 2 else "", "stdout", n, AT, f"{n}"
        )
        for n in range(1, 11)
    ]
    store.append_logs(lines)
    store.append_logs([LogLine(2, "a", "", "stderr", 1, AT, "other run")])
    store.flush()
    assert store.get_logs(1) == lines
    assert [x.seq for x in store.get_logs(1, step_id="b", after_seq=7)] == [8, 9, 10]
    assert [x.seq for x in store.get_logs(1, host="web-1", limit=2)] == [1, 3]
    assert store.log_count(1) == 10 and store.log_count(1, "a") == 5
    assert store.max_log_seq(1) == 10 and store.max_log_seq(3) == 0
