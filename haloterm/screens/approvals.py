"""The approvals queue: every waiting approval of every run, oldest first."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Header, Label, Static

from haloterm.durations import countdown
from haloterm.engine.events import ApprovalChanged, Event
from haloterm.screens.dialogs import CommentScreen
from haloterm.storage import Approval, ApprovalRefused
from haloterm.textsafe import safe_json
from haloterm.widgets.footer import KeyFooter
from haloterm.widgets.row_table import RowTable

if TYPE_CHECKING:
    from haloterm.app import HalotermApp
    from haloterm.models import Execution

logger = logging.getLogger(__name__)

Decision = Literal["approved", "rejected"]


@dataclass
class Waiting:
    """One waiting approval with the run it belongs to."""

    approval: Approval
    execution: Execution | None


def timed_out(approval: Approval, now: datetime) -> bool:
    """Whether the approval's deadline has passed (its owner records the timeout)."""
    return approval.deadline is not None and approval.deadline <= now


def may_decide(approval: Approval, user: str, roles: set[str]) -> tuple[bool, str]:
    """Whether a user may decide an approval, and why not when they may not.

    Args:
        approval: the waiting approval.
        user: the operator.
        roles: the operator's roles.

    Returns:
        ``(True, "")`` or ``(False, reason)`` naming who can decide instead.
    """
    listed = user in approval.approvers or any(
        entry.removeprefix("role:") in roles
        for entry in approval.approvers
        if entry.startswith("role:")
    )
    others = ", ".join(approval.approvers)
    if not listed:
        return False, f"only {others} can decide"
    if approval.requested_by == user and not approval.allow_self_approval:
        return False, f"you started this run; {others} must decide"
    if any(d.by == user for d in approval.decisions):
        return False, "you have decided already"
    return True, ""


def refusal(
    approval: Approval, user: str, roles: set[str], now: datetime
) -> str | None:
    """Why a user cannot decide an approval now, or None when they can."""
    if timed_out(approval, now):
        return "it timed out; the run takes its timeout path"
    allowed, why_not = may_decide(approval, user, roles)
    return None if allowed else why_not


def say_refusal(screen: Widget, approval: Approval, reason: str) -> None:
    """Tell the operator why y or n did nothing on this approval."""
    screen.notify(
        f"You may not decide {approval.step_id} of run #{approval.execution_id}: "
        f"{reason}.",
        title="Not yours to decide",
        severity="warning",
        markup=False,
    )


class ApprovalsScreen(Screen[None]):
    """Waiting approvals with a live countdown; ``y`` approves, ``n`` rejects."""

    CSS_PATH = "approvals.tcss"
    SCREEN_TITLE = "Approvals"
    HELP = (
        "Every approval waiting in any run, oldest first. y approves and n rejects "
        "the selected one (a comment is asked for; required to reject)."
    )
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("y", "decide('approved')", "Approve", id="approve"),
        Binding("n", "decide('rejected')", "Reject", id="reject"),
        Binding("enter", "open_run", "Open run", id="open-run"),
    ]

    app: HalotermApp

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Waiting] = []
        self._expired: set[str] = set()
        self.keys_ready = False
        """False until the queue is first read; the app holds keys until then."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="approvals-body"):
            yield Label("Waiting approvals", id="approvals-title")
            yield RowTable(id="approvals", zebra_stripes=True)
            yield Static("", id="approval-detail", markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("Left", key="left", width=9)
        table.add_column("Runbook", key="runbook")
        table.add_column("Step", key="step")
        table.add_column("Run", key="run")
        table.add_column("Asked by", key="by")
        table.add_column("You", key="you")
        table.focus()
        self.load_approvals()
        self.set_interval(1.0, self._tick)

    # ------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="approvals", exit_on_error=False)
    def load_approvals(self) -> None:
        """Read the waiting approvals and their runs in a thread."""
        store = self.app.services.store
        found: list[Waiting] | None = None
        try:
            found = [
                Waiting(approval, store.get_execution(approval.execution_id))
                for approval in store.pending_approvals()
            ]
        finally:
            self.app.call_from_thread(self._loaded, found)

    def _loaded(self, found: list[Waiting] | None) -> None:
        if found is not None:
            self._show(found)
        if not self.keys_ready:
            self.keys_ready = True
            self.app.replay_keys()

    def _show(self, waiting: list[Waiting]) -> None:
        table = self.query_one(DataTable)
        keep = table.cursor_row
        self.waiting = waiting
        table.clear()
        now = self.app.clock()
        roles = self.app.services.settings.roles_of(self.app.operator)
        for item in waiting:
            approval = item.approval
            runbook = item.execution.runbook if item.execution else "?"
            table.add_row(
                Text(countdown(approval.deadline, now)),
                Text(runbook),
                Text(approval.step_id),
                Text(f"#{approval.execution_id}"),
                Text(approval.requested_by),
                self._you(approval, roles, now),
                key=f"{approval.execution_id}/{approval.step_id}",
            )
        title = f"Waiting approvals: {len(waiting)}" if waiting else "Nothing waits."
        self.query_one("#approvals-title", Label).update(title)
        if waiting:
            table.move_cursor(row=min(keep, len(waiting) - 1), animate=False)
        self._show_detail()

    def _you(self, approval: Approval, roles: set[str], now: datetime) -> Text:
        if timed_out(approval, now):
            return Text("⌛ timed out")
        allowed, _ = may_decide(approval, self.app.operator, roles)
        return Text("✔ may decide" if allowed else "✘ not you")

    def _tick(self) -> None:
        table = self.query_one(DataTable)
        now = self.app.clock()
        roles = self.app.services.settings.roles_of(self.app.operator)
        newly_expired = False
        for item in self.waiting:
            approval = item.approval
            key = f"{approval.execution_id}/{approval.step_id}"
            table.update_cell(key, "left", Text(countdown(approval.deadline, now)))
            if timed_out(approval, now) and key not in self._expired:
                self._expired.add(key)
                newly_expired = True
                table.update_cell(key, "you", self._you(approval, roles, now))
        if newly_expired:
            # A deadline just passed: y and n go off and the detail says so.
            self._show_detail()
            self.refresh_bindings()

    # ------------------------------------------------------------------ detail

    @property
    def selected(self) -> Waiting | None:
        if not self.waiting:
            return None
        row = self.query_one(DataTable).cursor_row
        return self.waiting[min(row, len(self.waiting) - 1)]

    def _show_detail(self) -> None:
        detail = self.query_one("#approval-detail", Static)
        item = self.selected
        if item is None:
            detail.update("")
            return
        detail.update(self._detail(item))

    def _detail(self, item: Waiting) -> Text:
        # Who may decide and by when come first: on a short terminal the message
        # and what runs next may be cut, never the decision.
        approval = item.approval
        text = Text()
        runbook = item.execution.runbook if item.execution else "?"
        text.append(
            f"{runbook} #{approval.execution_id} · {approval.step_id}\n", "bold"
        )
        text.append_text(self._decision_line(approval))
        if approval.deadline is not None:
            text.append("\nDeadline: ", style="bold")
            text.append(f"{approval.deadline:%Y-%m-%d %H:%M:%S}Z")
            text.append(f", then {approval.on_timeout}")
            if approval.escalated:
                text.append(" (escalated)")
        text.append("\n\n")
        text.append(approval.message or "(no message)")
        for entry in approval.summary.get("next", []):
            text.append("\nNext: ", style="bold")
            text.append(f"{entry.get('id')} ({entry.get('action')}) ")
            text.append(safe_json(entry.get("with")))
        params = approval.summary.get("params")
        if params:
            text.append("\nParams: ", style="bold")
            text.append(safe_json(params))
        text.append("\nApprovers: ", style="bold")
        text.append(", ".join(approval.approvers))
        needed = approval.min_approvals - len(approval.decisions)
        if approval.min_approvals > 1:
            text.append(f"  ({needed} more of {approval.min_approvals} needed)")
        text.append("\nAsked by: ", style="bold")
        text.append(approval.requested_by)
        return text

    def _decision_line(self, approval: Approval) -> Text:
        if timed_out(approval, self.app.clock()):
            assert approval.deadline is not None
            return Text(
                f"Timed out at {approval.deadline:%Y-%m-%d %H:%M:%S}Z: too late to "
                "decide; the run takes its timeout path.",
                style="bold",
            )
        roles = self.app.services.settings.roles_of(self.app.operator)
        allowed, why_not = may_decide(approval, self.app.operator, roles)
        if allowed:
            return Text("You may decide: y approve, n reject.", style="bold")
        return Text(f"You may not decide: {why_not}.", style="italic")

    # ------------------------------------------------------------------ live

    def on_engine_event(self, event: Event) -> None:
        """Re-read the queue when an approval changes (called by the app)."""
        if isinstance(event, ApprovalChanged):
            self.load_approvals()

    def on_store_changed(self) -> None:
        """Another process may have asked for or decided one (called by the app)."""
        self.load_approvals()

    # ------------------------------------------------------------------ actions

    def _refusal(self, item: Waiting) -> str | None:
        operator = self.app.operator
        roles = self.app.services.settings.roles_of(operator)
        return refusal(item.approval, operator, roles, self.app.clock())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        item = self.selected
        if action == "decide" and item is not None:
            # A decision that would only be refused is not offered: the keys go
            # dim, and pressing one says why (see on_key).
            return self._refusal(item) is None or None
        if action in ("decide", "open_run"):
            return item is not None or None
        return True

    def on_key(self, event: events.Key) -> None:
        """y or n on an approval the operator may not decide: say why, do nothing."""
        item = self.selected
        if event.key in ("y", "n") and item is not None:
            reason = self._refusal(item)
            if reason is not None:
                event.stop()
                say_refusal(self, item.approval, reason)

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()
        self.refresh_bindings()

    def action_decide(self, decision: Decision) -> None:
        """Approve or reject the selected approval, after asking for a comment."""
        item = self.selected
        if item is None or self._refusal(item) is not None:
            return
        approval = item.approval
        verb = "Approve" if decision == "approved" else "Reject"
        prompt = CommentScreen(
            f"{verb} {approval.step_id} of run #{approval.execution_id}",
            detail=approval.message,
            required=decision == "rejected",
        )

        def send(comment: str | None) -> None:
            if comment is not None:
                self.send_decision(approval, decision, comment or None)

        self.app.push_screen(prompt, send)

    @work(exclusive=True, group="decide", exit_on_error=False)
    async def send_decision(
        self, approval: Approval, decision: Decision, comment: str | None
    ) -> None:
        """Hand the decision to the engine; a refusal is shown with its reason."""
        try:
            await self.app.services.engine.decide(
                approval.execution_id,
                approval.step_id,
                actor=self.app.operator,
                decision=decision,
                comment=comment,
            )
        except ApprovalRefused as exc:
            self.notify(
                exc.reason, title="Not recorded", severity="error", markup=False
            )
        else:
            word = "Approved" if decision == "approved" else "Rejected"
            self.notify(
                f"{word} {approval.step_id} of run #{approval.execution_id}.",
                markup=False,
            )
        self.load_approvals()

    def action_open_run(self) -> None:
        """Open the selected approval's run."""
        from haloterm.screens.run import RunScreen

        item = self.selected
        if item is not None:
            self.app.push_screen(RunScreen(item.approval.execution_id))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_run()
