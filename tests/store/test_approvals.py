"""C22: approval compare-and-set, self-approval, roles, quorum and late clicks."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from haloterm.storage import Approval, ApprovalRefused, NotFoundError, Store
from haloterm.storage.records import Decision
from tests.store.conftest import FakeClock


def request(
    store: Store,
    clock: FakeClock,
    *,
    approvers: list[str] | None = None,
    min_approvals: int = 1,
    allow_self: bool = False,
    message: str = "Restart api on prod?",
) -> int:
    execution = store.create_execution(
        runbook="rb",
        version=1,
        params={},
        secret_params=[],
        trigger="manual",
        operator="alice",
        step_ids=["approve"],
    )
    store.create_approval(
        execution_id=execution.id,
        step_id="approve",
        approvers=approvers or ["role:lead"],
        message=message,
        deadline=clock() + timedelta(seconds=60),
        min_approvals=min_approvals,
        allow_self_approval=allow_self,
        requested_by="alice",
    )
    return execution.id


def test_an_early_approval_counts(store: Store, clock: FakeClock) -> None:
    eid = request(store, clock)
    [pending] = store.pending_approvals()
    assert (pending.status, pending.deadline) == (
        "waiting",
        clock() + timedelta(seconds=60),
    )
    clock.advance(0.2)
    approval = store.decide_approval(
        eid, "approve", actor="bob", decision="approved", comment="go", roles={"lead"}
    )
    assert (approval.status, approval.decided_by, approval.comment) == (
        "approved",
        "bob",
        "go",
    )
    assert approval.decided_at == clock()
    assert approval.deciders == ["bob"]
    assert store.get_approval(eid, "approve") == approval
    assert store.pending_approvals() == []
    audit = store.list_audit(target_type="execution", target_id=eid, limit=1)[0]
    assert (audit.action, audit.detail["comment"]) == ("approval.approved", "go")


def test_a_late_click_is_told_when_it_timed_out(store: Store, clock: FakeClock) -> None:
    eid = request(store, clock)
    clock.advance(60)
    store.decide_approval(eid, "approve", actor="haloterm", decision="timed_out")
    clock.advance(1)
    with pytest.raises(ApprovalRefused) as caught:
        store.decide_approval(
            eid, "approve", actor="bob", decision="approved", roles={"lead"}
        )
    assert caught.value.reason == "already timed out at 2026-03-29 00:31:00Z"
    assert caught.value.decided_by == "haloterm"


def race(
    first: Store, second: Store, eid: int
) -> dict[str, Approval | ApprovalRefused]:
    barrier = threading.Barrier(2)
    results: dict[str, Approval | ApprovalRefused] = {}

    def decide(target: Store, actor: str, decision: Decision) -> None:
        barrier.wait()
        try:
            results[actor] = target.decide_approval(
                eid, "approve", actor=actor, decision=decision, roles={"lead"}
            )
        except ApprovalRefused as exc:
            results[actor] = exc

    threads = [
        threading.Thread(target=decide, args=(first, "bob", "approved")),
        threading.Thread(target=decide, args=(second, "carol", "rejected")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_click_after_the_deadline_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    eid = request(store, clock)
    clock.advance(61)
    with pytest.raises(ApprovalRefused) as caught:
        store.decide_approval(
            eid, "approve", actor="bob", decision="approved", roles={"lead"}
        )
    assert caught.value.reason == "already timed out at 2026-03-29 00:31:00Z"
    assert store.get_approval(eid, "approve").status == "waiting"  # type: ignore[union-attr]
    timed_out = store.decide_approval(
        eid, "approve", actor="haloterm", decision="timed_out"
    )
    assert timed_out.status == "timed_out"


def test_two_consoles_decide_at_once_and_one_wins(
    store: Store, second: Store, clock: FakeClock
) -> None:
    for _ in range(10):
        eid = request(store, clock)
        results = race(store, second, eid)
        won = [a for a, r in results.items() if isinstance(r, Approval)]
        lost = [r for r in results.values() if isinstance(r, ApprovalRefused)]
        assert len(won) == 1 and len(lost) == 1
        assert lost[0].decided_by == won[0]
        assert won[0] in lost[0].reason
        stored = store.get_approval(eid, "approve")
        assert stored is not None and len(stored.decisions) == 1
        assert stored.decided_by == won[0]


def test_self_approval_is_refused_unless_allowed(
    store: Store, clock: FakeClock
) -> None:
    eid = request(store, clock, approvers=["alice", "role:lead"])
    with pytest.raises(ApprovalRefused, match="started this run"):
        store.decide_approval(eid, "approve", actor="alice", decision="approved")
    assert store.get_approval(eid, "approve").status == "waiting"  # type: ignore[union-attr]
    allowed = request(store, clock, approvers=["alice"], allow_self=True)
    approval = store.decide_approval(
        allowed, "approve", actor="alice", decision="approved"
    )
    assert approval.status == "approved"


def test_only_approvers_may_decide(store: Store, clock: FakeClock) -> None:
    eid = request(store, clock, approvers=["role:lead", "dave"])
    with pytest.raises(ApprovalRefused, match="not an approver"):
        store.decide_approval(
            eid, "approve", actor="eve", decision="approved", roles={"dev"}
        )
    approval = store.decide_approval(eid, "approve", actor="dave", decision="rejected")
    assert approval.status == "rejected"
    with pytest.raises(NotFoundError):
        store.decide_approval(eid, "other", actor="dave", decision="approved")


def test_quorum_needs_distinct_approvers(store: Store, clock: FakeClock) -> None:
    eid = request(store, clock, min_approvals=2)
    first = store.decide_approval(
        eid, "approve", actor="bob", decision="approved", roles={"lead"}
    )
    assert (first.status, first.decided_by, len(first.decisions)) == (
        "waiting",
        None,
        1,
    )
    with pytest.raises(ApprovalRefused, match="already answered"):
        store.decide_approval(
            eid, "approve", actor="bob", decision="approved", roles={"lead"}
        )
    done = store.decide_approval(
        eid, "approve", actor="carol", decision="approved", roles={"lead"}
    )
    assert (done.status, done.decided_by) == ("approved", "carol")
    assert done.deciders == ["bob", "carol"]


def test_one_reject_decides_a_quorum(store: Store, clock: FakeClock) -> None:
    eid = request(store, clock, min_approvals=3)
    store.decide_approval(
        eid, "approve", actor="bob", decision="approved", roles={"lead"}
    )
    done = store.decide_approval(
        eid, "approve", actor="carol", decision="rejected", roles={"lead"}
    )
    assert (done.status, done.deciders) == ("rejected", ["carol"])


def test_requesting_again_keeps_a_waiting_request(
    store: Store, clock: FakeClock
) -> None:
    eid = request(store, clock)
    deadline = store.get_approval(eid, "approve").deadline  # type: ignore[union-attr]
    clock.advance(30)
    store.create_approval(
        execution_id=eid,
        step_id="approve",
        approvers=["role:lead"],
        message="again",
        deadline=clock() + timedelta(seconds=60),
        min_approvals=1,
        allow_self_approval=False,
        requested_by="alice",
    )
    kept = store.get_approval(eid, "approve")
    assert kept is not None and kept.deadline == deadline and kept.message != "again"
    with pytest.raises(ValueError, match="approver"):
        store.create_approval(
            execution_id=eid,
            step_id="x",
            approvers=[],
            message="",
            deadline=None,
            min_approvals=1,
            allow_self_approval=False,
            requested_by="alice",
        )
