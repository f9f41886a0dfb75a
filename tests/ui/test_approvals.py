"""The approvals queue: who may decide, approve, reject, refusals, C28 messages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static

from haloterm.app import create_app
from haloterm.durations import countdown
from haloterm.screens.approvals import ApprovalsScreen, may_decide
from haloterm.screens.dialogs import CommentScreen
from haloterm.services import Services
from haloterm.storage import Approval
from tests.ui.conftest import FROZEN, wait_for

JOINER = {"full_name": "Dana [/", "username": "dana", "start_date": "2026-12-07"}


def _approval(**kw: object) -> Approval:
    base: dict[str, object] = {
        "execution_id": 1,
        "step_id": "approve",
        "status": "waiting",
        "approvers": ["role:lead", "carol"],
        "requested_by": "alice",
        "requested_at": FROZEN,
    }
    return Approval.model_validate(base | kw)


def test_may_decide_by_user_role_and_self() -> None:
    assert may_decide(_approval(), "bob", {"lead"}) == (True, "")
    assert may_decide(_approval(), "carol", set()) == (True, "")
    allowed, why = may_decide(_approval(), "dave", {"oncall"})
    assert not allowed and "role:lead, carol" in why
    allowed, why = may_decide(_approval(), "alice", {"lead"})
    assert not allowed and "you started" in why
    assert may_decide(_approval(allow_self_approval=True), "alice", {"lead"})[0]


def test_countdown() -> None:
    assert countdown(None, FROZEN) == "no limit"
    assert countdown(FROZEN + timedelta(minutes=14, seconds=5), FROZEN) == "14m05s"
    assert countdown(FROZEN + timedelta(hours=71, minutes=59), FROZEN) == "71h59m"
    assert countdown(FROZEN - timedelta(seconds=1), FROZEN) == "overdue"


async def test_queue_shows_who_may_decide(services: Services, tmp_path: Path) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        execution_id = await services.engine.start(
            "onboard-new-joiner", JOINER | {"root": str(tmp_path)}, operator="alice"
        )
        await wait_for(pilot, lambda: app.waiting_approvals == 1, what="waiting")
        assert "1 approval waiting" in app.sub_title
        await pilot.press("a")
        screen = app.screen
        assert isinstance(screen, ApprovalsScreen)
        await wait_for(pilot, lambda: len(screen.waiting) == 1)
        table = screen.query_one(DataTable)
        assert str(table.get_cell_at(Coordinate(0, 0))) == "72h00m"
        assert "not you" in str(table.get_cell_at(Coordinate(0, 5)))
        detail = str(screen.query_one("#approval-detail", Static).render())
        assert "Dana [/" in detail
        assert "only role:lead can decide" in detail
        # alice may not decide: y is not offered, and pressing it says why.
        assert screen.check_action("decide", ("approved",)) is None
        await pilot.press("y")
        assert app.screen is screen
        await wait_for(
            pilot,
            lambda: any(
                n.title == "Not yours to decide" and "only role:lead" in n.message
                for n in app._notifications
            ),
        )
        approval = services.store.get_approval(execution_id, "approval")
        assert approval is not None and approval.status == "waiting"
        await services.engine.cancel(execution_id, actor="alice")


async def test_reject_needs_a_comment_and_decides(
    services: Services, open_services: object, tmp_path: Path
) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        execution_id = await services.engine.start(
            "onboard-new-joiner",
            JOINER | {"root": str(tmp_path)},
            operator="bob",
        )
        await wait_for(pilot, lambda: app.waiting_approvals == 1)
        # alice (oncall) is not a lead: give her the role for this console.
        services.settings.operators["alice"].roles.append("lead")
        await pilot.press("a")
        screen = app.screen
        assert isinstance(screen, ApprovalsScreen)
        await wait_for(pilot, lambda: len(screen.waiting) == 1)
        assert "may decide" in str(
            screen.query_one(DataTable).get_cell_at(Coordinate(0, 5))
        )
        await pilot.press("n")
        assert isinstance(app.screen, CommentScreen)
        await pilot.press("enter")
        assert "required" in str(app.screen.query_one("#problem", Static).render())
        await pilot.press(*"not [bold]today[/bold]", "enter")
        await wait_for(pilot, lambda: not screen.waiting, what="queue emptied")
        approval = services.store.get_approval(execution_id, "approval")
        assert approval is not None and approval.status == "rejected"
        assert approval.comment == "not [bold]today[/bold]"
        assert approval.decided_by == "alice"
        await services.engine.wait(execution_id)


async def test_past_the_deadline_y_and_n_are_off(
    services: Services, tmp_path: Path
) -> None:
    """C22: once the deadline has passed the queue says "timed out at ..." and a
    late y or n opens no dialog (the owner's timer records the timeout)."""
    now = [FROZEN]
    app = create_app(services, clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        execution_id = await services.engine.start(
            "onboard-new-joiner", JOINER | {"root": str(tmp_path)}, operator="bob"
        )
        await wait_for(pilot, lambda: app.waiting_approvals == 1)
        services.settings.operators["alice"].roles.append("lead")
        await pilot.press("a")
        screen = app.screen
        assert isinstance(screen, ApprovalsScreen)
        await wait_for(pilot, lambda: len(screen.waiting) == 1)
        assert screen.check_action("decide", ("approved",)) is True

        now[0] = FROZEN + timedelta(hours=72, seconds=1)
        table = screen.query_one(DataTable)
        await wait_for(
            pilot,
            lambda: "timed out" in str(table.get_cell_at(Coordinate(0, 5))),
            what="row marked timed out",
        )
        assert str(table.get_cell_at(Coordinate(0, 0))) == "overdue"
        detail = str(screen.query_one("#approval-detail", Static).render())
        assert "Timed out at 2025-06-06 15:00:00Z" in detail
        assert not screen.check_action("decide", ("approved",))
        await pilot.press("y")
        await pilot.press("n")
        assert app.screen is screen
        approval = services.store.get_approval(execution_id, "approval")
        assert approval is not None and approval.status == "waiting"
        await services.engine.cancel(execution_id, actor="alice")
