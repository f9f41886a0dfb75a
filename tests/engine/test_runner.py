"""The engine's state machine against a real store, real processes and real time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from haloterm.engine import StartError
from haloterm.engine.events import Event, ExecutionChanged, StepChanged
from haloterm.models import ExecutionStatus, StepStatus
from haloterm.params import ParamError
from haloterm.services import Services
from haloterm.storage import TicketQuery, parse_ticket_filter
from tests.engine.conftest import AddRunbook


async def run_to_end(svc: Services, name: str, **params: object) -> int:
    execution_id = await svc.engine.start(name, params, operator="alice")
    await asyncio.wait_for(svc.engine.wait(execution_id), 30)
    return execution_id


def statuses(svc: Services, execution_id: int) -> dict[str, str]:
    return {
        r.step_id: r.status.value
        for r in svc.store.step_runs(execution_id)
        if not r.host
    }


async def test_steps_run_in_order_and_pass_outputs_on(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: chain
        params:
          who: {type: string, default: world}
        steps:
          - id: hello
            action: shell
            with: {command: "echo hello {{ params.who }}"}
          - id: echo-back
            action: shell
            with: {command: "echo got {{ steps.hello.output | trim }}"}
        """
    )
    execution_id = await run_to_end(svc, "chain", who="a b")
    execution = svc.store.get_execution(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.SUCCEEDED
    texts = [line.text for line in svc.store.get_logs(execution_id)]
    assert "hello a b" in texts
    assert "got hello a b" in texts
    assert statuses(svc, execution_id) == {"hello": "passed", "echo-back": "passed"}


async def test_when_false_skips_and_only_on_failure_is_not_reached(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: conditions
        params:
          env: {type: choice, choices: [prod, staging], default: staging}
        steps:
          - id: prod-only
            action: shell
            when: "{{ params.env == 'prod' }}"
            with: {command: "exit 1"}
          - id: always
            action: shell
            with: {command: "true"}
          - id: cleanup
            action: shell
            only_on_failure: true
            with: {command: "exit 1"}
        """
    )
    execution_id = await run_to_end(svc, "conditions")
    runs = {r.step_id: r for r in svc.store.step_runs(execution_id)}
    assert runs["prod-only"].status is StepStatus.SKIPPED
    assert runs["always"].status is StepStatus.PASSED
    assert runs["cleanup"].status is StepStatus.SKIPPED
    assert runs["cleanup"].reason == "only on failure"
    execution = svc.store.get_execution(execution_id)
    assert execution is not None and execution.status is ExecutionStatus.SUCCEEDED


async def test_retries_with_backoff_until_the_step_passes(
    svc: Services, add_runbook: AddRunbook, tmp_path: Path
) -> None:
    counter = tmp_path / "attempts"
    add_runbook(
        f"""
        name: flaky
        steps:
          - id: flaky
            action: shell
            with:
              command: |
                n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}
                [ $n -ge 3 ]
            retries: {{count: 3, delay: 50ms, backoff: 2}}
        """
    )
    execution_id = await run_to_end(svc, "flaky")
    (run,) = [r for r in svc.store.step_runs(execution_id) if r.step_id == "flaky"]
    assert run.status is StepStatus.PASSED
    assert run.attempts == 3
    assert counter.read_text().strip() == "3"


async def test_abort_fails_the_execution_and_later_steps_are_not_reached(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: aborts
        steps:
          - id: broken
            action: shell
            with: {command: "echo about to fail; exit 3"}
          - id: after
            action: shell
            with: {command: "true"}
        """
    )
    execution_id = await run_to_end(svc, "aborts")
    execution = svc.store.get_execution(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.FAILED
    assert execution.reason == "step broken failed: exit 3"
    runs = {r.step_id: r for r in svc.store.step_runs(execution_id)}
    assert runs["broken"].exit_code == 3
    assert runs["after"].status is StepStatus.SKIPPED
    assert runs["after"].reason == "not reached"


async def test_continue_and_goto_handle_failures_without_failing_the_run(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: branches
        steps:
          - id: soft
            action: shell
            with: {command: "exit 1"}
            on_failure: continue
          - id: hard
            action: shell
            with: {command: "exit 2"}
            on_failure: {goto: rollback}
          - id: skipped-by-goto
            action: shell
            with: {command: "true"}
          - id: rollback
            action: shell
            only_on_failure: true
            with: {command: "echo rolling back"}
        """
    )
    execution_id = await run_to_end(svc, "branches")
    execution = svc.store.get_execution(execution_id)
    assert execution is not None and execution.status is ExecutionStatus.SUCCEEDED
    assert execution.reason == "succeeded after handling failed steps: soft, hard"
    assert statuses(svc, execution_id) == {
        "soft": "failed",
        "hard": "failed",
        "skipped-by-goto": "skipped",
        "rollback": "passed",
    }


async def test_timeout_stops_the_whole_process_group(
    svc: Services, add_runbook: AddRunbook, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    add_runbook(
        f"""
        name: slow
        steps:
          - id: slow
            action: shell
            with:
              command: >-
                sleep 600 & echo $! > {pids};
                sleep 600 & echo $! >> {pids}; wait
              kill_grace: 200ms
            timeout: 1s
        """
    )
    execution_id = await run_to_end(svc, "slow")
    (run,) = [r for r in svc.store.step_runs(execution_id) if r.step_id == "slow"]
    assert run.status is StepStatus.FAILED
    assert run.reason is not None and run.reason.startswith("timeout")
    for pid in pids.read_text().split():
        assert not _alive(int(pid)), f"child {pid} survived the timeout"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_cancel_stops_a_running_step(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: long
        steps:
          - id: long
            action: shell
            with: {command: "echo started; sleep 600", kill_grace: 200ms}
          - id: never
            action: shell
            with: {command: "true"}
        """
    )
    execution_id = await svc.engine.start("long", {}, operator="alice")
    await _wait_for_step(svc, execution_id, "long", StepStatus.RUNNING)
    assert await svc.engine.cancel(execution_id, actor="alice", reason="wrong host")
    execution = svc.store.get_execution(execution_id)
    assert execution is not None
    assert execution.status is ExecutionStatus.CANCELLED
    runs = {r.step_id: r for r in svc.store.step_runs(execution_id)}
    assert runs["long"].status is StepStatus.FAILED
    assert runs["long"].reason is not None
    assert runs["long"].reason.startswith("cancelled by alice")
    assert runs["never"].status is StepStatus.SKIPPED
    actions = [a.action for a in svc.store.list_audit()]
    assert "execution.cancel" in actions


async def _wait_for_step(
    svc: Services, execution_id: int, step_id: str, status: StepStatus
) -> None:
    for _ in range(300):
        for run in svc.store.step_runs(execution_id):
            if run.step_id == step_id and not run.host and run.status is status:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{step_id} never became {status}")


async def test_every_event_is_published_after_its_change_is_committed(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: observed
        steps:
          - id: one
            action: shell
            with: {command: "echo one"}
          - id: two
            action: shell
            with: {command: "exit 4"}
            on_failure: continue
        """
    )
    mismatches: list[str] = []
    seen: list[Event] = []

    def check(event: Event) -> None:
        seen.append(event)
        if isinstance(event, StepChanged) and not event.host:
            stored = {r.step_id: r for r in svc.store.step_runs(event.execution_id)}
            if stored[event.step_id].status.value != event.status:
                mismatches.append(f"{event.step_id} {event.status}")
        if isinstance(event, ExecutionChanged):
            execution = svc.store.get_execution(event.execution_id)
            if execution is None or execution.status.value != event.status:
                mismatches.append(f"execution {event.status}")

    svc.engine.bus.subscribe(check)
    await run_to_end(svc, "observed")
    assert mismatches == []
    step_events = [(e.step_id, e.status) for e in seen if isinstance(e, StepChanged)]
    assert ("one", "running") in step_events
    assert ("two", "failed") in step_events


async def test_invalid_params_are_refused_before_anything_is_stored(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: typed
        params:
          count: {type: integer, min: 1, max: 5, required: true}
          env: {type: choice, choices: [prod, staging]}
        steps:
          - id: s
            action: shell
            with: {command: "true"}
        """
    )
    with pytest.raises(ParamError) as caught:
        await svc.engine.start("typed", {"count": "9", "env": "dev"}, operator="alice")
    assert set(caught.value.problems) == {"count", "env"}
    assert svc.store.list_executions() == []


async def test_child_runbook_outputs_return_to_the_parent(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: child
        params:
          word: {type: string, required: true}
        steps:
          - id: say
            action: shell
            with: {command: "echo child says {{ params.word }}"}
        """
    )
    add_runbook(
        """
        name: parent
        steps:
          - id: call
            action: runbook
            with: {runbook: child, params: {word: hi}}
          - id: after
            action: shell
            with: {command: "echo {{ steps.call.outputs.steps.say.output | trim }}"}
        """
    )
    execution_id = await run_to_end(svc, "parent")
    execution = svc.store.get_execution(execution_id)
    assert execution is not None and execution.status is ExecutionStatus.SUCCEEDED
    (child,) = svc.store.child_executions(execution_id)
    assert child.runbook == "child"
    assert child.parent_step == "call"
    texts = [line.text for line in svc.store.get_logs(execution_id)]
    assert "child says hi" in texts


async def test_a_parent_secret_passed_to_a_child_param_is_never_stored(
    svc: Services, add_runbook: AddRunbook, tmp_path: Path
) -> None:
    """The child declares a plain string, but the value holds the parent's secret:
    the child keeps it like a secret param (C27)."""
    add_runbook(
        """
        name: child-str
        params:
          v: {type: string, required: true}
        steps:
          - id: use
            action: shell
            with: {command: "echo got {{ params.v }}; xargs -0 echo </proc/$$/cmdline"}
        """
    )
    add_runbook(
        """
        name: passes-secret
        params:
          tok: {type: secret, required: true}
        steps:
          - id: call
            action: runbook
            with: {runbook: child-str, params: {v: "x-{{ params.tok }}-y"}}
        """
    )
    secret = "Qw7RtY3uIo9p"
    execution_id = await svc.engine.start(
        "passes-secret", {"tok": secret}, operator="alice"
    )
    assert await svc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED
    (child,) = svc.store.child_executions(execution_id)
    assert child.params == {}
    assert child.secret_params == ["v"]
    texts = [line.text for line in svc.store.get_logs(child.id)]
    assert texts[:1] == ["got ******"]
    # It reached the child's command through the environment, not its argv.
    assert "HALOTERM_SECRET_V" in texts[1]
    svc.store.flush()
    assert _files_holding(tmp_path, secret) == []


def _files_holding(folder: Path, text: str) -> list[str]:
    return [p.name for p in folder.glob("store.db*") if text.encode() in p.read_bytes()]


async def test_runtime_child_depth_cap_names_the_whole_chain(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: c
        params:
          next: {type: string, default: c}
        steps:
          - id: loop
            action: runbook
            with: {runbook: "{{ params.next }}"}
        """
    )
    execution_id = await run_to_end(svc, "c")
    execution = svc.store.get_execution(execution_id)
    assert execution is not None and execution.status is ExecutionStatus.FAILED
    deepest = svc.store.list_executions(limit=100)[0]
    assert deepest.reason is not None
    assert "depth cap 10" in deepest.reason
    assert "c → c → c" in deepest.reason
    assert len(svc.store.list_executions(limit=100)) == 10
    # Each parent names the deepest cause once, not every level's words again.
    assert execution.reason is not None
    assert execution.reason.count("depth cap") == 1
    assert execution.reason.count("child execution") == 1
    assert f"[in execution {deepest.id} (c), 8 levels down]" in execution.reason


async def test_on_failure_run_starts_a_recovery_runbook(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: recover
        steps:
          - id: fix
            action: shell
            with: {command: "echo recovering"}
        """
    )
    add_runbook(
        """
        name: breaks
        steps:
          - id: boom
            action: shell
            with: {command: "exit 1"}
            on_failure: {run: recover}
          - id: next
            action: shell
            with: {command: "true"}
        """
    )
    execution_id = await run_to_end(svc, "breaks")
    execution = svc.store.get_execution(execution_id)
    assert execution is not None and execution.status is ExecutionStatus.SUCCEEDED
    (child,) = svc.store.child_executions(execution_id)
    assert child.runbook == "recover"
    assert child.status is ExecutionStatus.SUCCEEDED


async def test_ticket_steps_update_and_open_tickets(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: ticketing
        steps:
          - id: note
            action: ticket
            with: {status: resolved, note: "done by {{ execution.operator }}"}
          - id: follow-up
            action: ticket
            with: {create: {title: "Follow up on {{ ticket.title }}", priority: P4}}
        """
    )
    ticket_id = svc.store.create_ticket(
        title="Disk full on [/var] again", priority="P2", actor="alice"
    )
    execution_id = await svc.engine.start(
        "ticketing", {}, operator="alice", ticket_id=ticket_id
    )
    assert await svc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED
    ticket = svc.store.get_ticket(ticket_id)
    assert ticket is not None and ticket.status == "resolved"
    kinds = [e.kind for e in svc.store.ticket_history(ticket_id)]
    assert "status_changed" in kinds and "note" in kinds
    titles = [t.title for t in svc.store.query_tickets(_all_tickets()).rows]
    assert "Follow up on Disk full on [/var] again" in titles


def _all_tickets() -> TicketQuery:
    return parse_ticket_filter("")


async def test_step_ids_that_match_dict_methods_still_read_as_steps(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: methods
        steps:
          - id: get
            action: shell
            with: {command: "echo fetched"}
          - id: items
            action: shell
            with: {command: "echo {{ steps.get.status }} {{ steps.get.output | trim }}"}
        """
    )
    execution_id = await run_to_end(svc, "methods")
    texts = [line.text for line in svc.store.get_logs(execution_id)]
    assert "passed fetched" in texts


async def test_a_finished_run_is_never_resumed_even_from_a_step(
    svc: Services, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: done-once
        steps:
          - id: only
            action: shell
            with: {command: "echo once"}
        """
    )
    execution_id = await run_to_end(svc, "done-once")
    with pytest.raises(StartError, match="succeeded: start a new run of done-once"):
        await svc.engine.resume(execution_id, actor="alice", from_step="only")
    execution = svc.store.get_execution(execution_id)
    assert execution is not None and execution.status is ExecutionStatus.SUCCEEDED
