"""Scheduled runs decided by the lease holder on a manual clock (C13, C14, C16, C17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from haloterm.automation.clock import ManualClock
from haloterm.automation.service import Automation
from haloterm.engine.events import Event, Notice
from haloterm.models import ExecutionStatus
from haloterm.services import Services
from haloterm.storage.automation import SlotDecision
from tests.automation.conftest import AddRunbook, scheduled


async def _settle(svc: Services) -> list[int]:
    """Wait for every run started so far; returns their ids, oldest first."""
    runs = svc.store.list_executions(limit=10_000)
    for execution in runs:
        await svc.engine.wait(execution.id)
    return sorted(e.id for e in runs)


async def _walk(
    auto: Automation, clock: ManualClock, until: datetime, step: float
) -> None:
    while clock.now() < until:
        clock.advance(step)
        await auto.step(force=True)
        # The manual clock moves hours in no real time: let each started run end
        # before the next slot, as it would long before in real time (a run still
        # going at its next slot is skipped on purpose, and tested on its own).
        for execution_id in auto.engine.active:
            await auto.engine.wait(execution_id)


def _notices(svc: Services) -> list[Notice]:
    seen: list[Notice] = []

    def keep(event: Event) -> None:
        if isinstance(event, Notice):
            seen.append(event)

    svc.engine.bus.subscribe(keep)
    return seen


async def test_a_due_slot_runs_once(
    svc: Services, auto: Automation, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    clock.set(datetime(2025, 6, 1, 1, 0, tzinfo=UTC))
    add_runbook(scheduled("hourly", '{cron: "0 * * * *"}'))
    await auto.step(force=True)
    await _walk(auto, clock, clock.now() + timedelta(hours=2), 600)
    ids = await _settle(svc)
    assert len(ids) == 2
    runs = svc.store.schedule_runs("hourly#0")
    assert {r.slot_key for r in runs} == {
        "2025-06-01T02:00:00+00:00",
        "2025-06-01T03:00:00+00:00",
    }
    assert all(r.status == "started" for r in runs)
    execution = svc.store.get_execution(ids[0])
    assert execution is not None and execution.operator == "automation"
    assert execution.trigger.startswith("schedule:")
    assert execution.status is ExecutionStatus.SUCCEEDED


async def test_c13_spring_forward_fires_once_dst_adjusted(
    svc: Services, auto: Automation, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    clock.set(datetime(2025, 3, 29, 23, 0, tzinfo=UTC))
    add_runbook(scheduled("berlin", '{cron: "30 2 * * *", timezone: Europe/Berlin}'))
    await auto.step(force=True)
    await _walk(auto, clock, datetime(2025, 3, 30, 3, 0, tzinfo=UTC), 300)
    assert len(await _settle(svc)) == 1
    (run,) = svc.store.schedule_runs("berlin#0")
    assert run.scheduled_for == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    assert run.reason is not None and "DST-adjusted" in run.reason


async def test_c14_fall_back_fires_once_at_the_first_occurrence(
    svc: Services, auto: Automation, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    clock.set(datetime(2025, 10, 25, 22, 0, tzinfo=UTC))
    add_runbook(scheduled("berlin", '{cron: "30 2 * * *", timezone: Europe/Berlin}'))
    await auto.step(force=True)
    await _walk(auto, clock, datetime(2025, 10, 26, 3, 0, tzinfo=UTC), 300)
    assert len(await _settle(svc)) == 1
    (run,) = svc.store.schedule_runs("berlin#0")
    assert run.scheduled_for == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)

    # A second fire for the repeated 02:30 (as APScheduler 3 would make) is refused
    # by the (schedule, slot) key and audited as a suppressed duplicate.
    second = SlotDecision(
        slot_key="2025-10-26T02:30",
        scheduled_for=datetime(2025, 10, 26, 1, 30, tzinfo=UTC),
        status="starting",
    )
    ids = svc.store.record_slots(
        "berlin#0", [second], last_slot=second.scheduled_for, holder="x", actor="t"
    )
    assert ids == [None]
    (audit,) = svc.store.list_audit(target_type="schedule", limit=1)
    assert audit.action == "schedule.suppressed"
    assert "duplicate" in audit.detail["reason"]


async def test_c16_missed_slots_coalesce_into_one_late_run(
    svc: Services, auto: Automation, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    notices = _notices(svc)
    clock.set(datetime(2025, 6, 1, 1, 50, tzinfo=UTC))
    add_runbook(scheduled("hourly", '{cron: "0 * * * *"}'))
    await auto.step(force=True)
    clock.set(datetime(2025, 6, 1, 5, 10, tzinfo=UTC))
    await auto.step(force=True)

    assert len(await _settle(svc)) == 1
    runs = {r.scheduled_for.hour: r for r in svc.store.schedule_runs("hourly#0")}
    assert sorted(runs) == [2, 3, 4, 5]
    assert [runs[h].status for h in (2, 3, 4)] == ["missed"] * 3
    assert runs[5].status == "started"
    assert "10 min late" in (runs[5].reason or "")
    assert "no lease holder" in (runs[2].reason or "")
    (missed,) = [a for a in svc.store.list_audit() if a.action == "schedule.missed"]
    assert missed.detail["count"] == 3
    assert any("missed" in n.text for n in notices)


async def test_c16_skip_policy_runs_nothing_and_says_so(
    svc: Services, auto: Automation, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    notices = _notices(svc)
    clock.set(datetime(2025, 6, 1, 1, 50, tzinfo=UTC))
    add_runbook(scheduled("hourly", '{cron: "0 * * * *", misfire: skip}'))
    await auto.step(force=True)
    clock.set(datetime(2025, 6, 1, 5, 10, tzinfo=UTC))
    await auto.step(force=True)
    assert await _settle(svc) == []
    runs = svc.store.schedule_runs("hourly#0")
    assert len(runs) == 4 and {r.status for r in runs} == {"missed"}
    assert any("4 scheduled run(s) missed" in n.text for n in notices)


async def test_c16_a_slot_is_skipped_while_the_last_run_still_goes(
    svc: Services, auto: Automation, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    add_runbook(
        """
        name: slow
        triggers:
          - schedule: {every: 1m}
        steps:
          - id: gate
            action: approval
            with: {approvers: [bob], message: go}
        """
    )
    await auto.step(force=True)
    clock.advance(60)
    await auto.step(force=True)
    (first,) = svc.store.list_executions()
    await svc.engine.wait_until(first.id, {ExecutionStatus.WAITING})
    clock.advance(60)
    await auto.step(force=True)
    runs = svc.store.schedule_runs("slow#0")
    assert [r.status for r in runs] == ["skipped", "started"]
    assert runs[0].reason == f"skipped: still running (execution {first.id})"
    assert len(svc.store.list_executions()) == 1


async def test_c17a_clock_back_two_hours_resumes_within_one_interval(
    svc: Services, auto: Automation, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    add_runbook(scheduled("five", '{cron: "*/5 * * * *"}'))
    await auto.step(force=True)
    await _walk(auto, clock, clock.now() + timedelta(minutes=10), 60)
    assert len(await _settle(svc)) == 2

    clock.jump(-2 * 3600)
    await auto.step(force=True)
    await _walk(auto, clock, clock.now() + timedelta(minutes=5), 60)
    assert len(await _settle(svc)) == 3
    jumps = [a for a in svc.store.list_audit() if a.action == "clock.jump"]
    assert jumps and jumps[0].detail["direction"] == "back"
    assert svc.store.clock_epoch() == 1


async def test_c17b_ten_years_forward_collapses_into_one_decision(
    svc: Services, auto: Automation, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    add_runbook(scheduled("five", '{cron: "*/5 * * * *"}'))
    await auto.step(force=True)
    clock.advance(120)
    clock.jump(10 * 365 * 86400)
    await auto.step(force=True)
    assert len(await _settle(svc)) == 1
    runs = svc.store.schedule_runs("five#0", limit=1000)
    assert [r.status for r in runs].count("started") == 1
    assert [r.status for r in runs].count("missed") == 50
    (missed,) = [a for a in svc.store.list_audit() if a.action == "schedule.missed"]
    assert missed.detail["more_not_listed"] is True

    clock.jump(-10 * 365 * 86400)
    await auto.step(force=True)
    await _walk(auto, clock, clock.now() + timedelta(minutes=5), 60)
    assert len(await _settle(svc)) == 2


async def test_paused_schedules_do_not_fire_and_resume_at_the_next_slot(
    svc: Services, auto: Automation, clock: ManualClock, add_runbook: AddRunbook
) -> None:
    add_runbook(scheduled("hourly", '{cron: "0 * * * *"}'))
    await auto.step(force=True)
    svc.store.set_schedule_paused("hourly#0", True, actor="alice")
    await _walk(auto, clock, clock.now() + timedelta(hours=3), 600)
    assert await _settle(svc) == []
    svc.store.set_schedule_paused("hourly#0", False, actor="alice")
    await _walk(auto, clock, clock.now() + timedelta(hours=1), 600)
    assert len(await _settle(svc)) == 1
    assert [r.status for r in svc.store.schedule_runs("hourly#0")] == ["started"]
    actions = [a.action for a in svc.store.list_audit(target_type="schedule")]
    assert "schedule.pause" in actions and "schedule.resume" in actions
