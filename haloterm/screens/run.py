"""The live run screen: every step's status, the selected step's output, and the keys
that act on a run (cancel, resume, approve, reject).

Engine events reach this screen through :meth:`RunScreen.on_engine_event`, which the
app calls for every event while the screen is on the stack. Store reads happen in
thread workers; the screen never waits on a step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, cast

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Tree

from haloterm.engine.events import (
    ApprovalChanged,
    Event,
    ExecutionChanged,
    LogBatch,
    StepChanged,
)
from haloterm.models import Execution, ExecutionStatus, Runbook, StepRun
from haloterm.screens.approvals import refusal, say_refusal
from haloterm.widgets.log_pane import LogPane, LogScope
from haloterm.widgets.run_header import RunHeader, header_text
from haloterm.widgets.step_tree import StepNode, StepTree

if TYPE_CHECKING:
    from haloterm.app import HalotermApp
    from haloterm.services import Services
    from haloterm.storage import Approval

logger = logging.getLogger(__name__)

_RESUMABLE = frozenset({"failed", "interrupted", "cancelled"})


@dataclass
class RunSnapshot:
    """What the screen loads from the store in one go."""

    execution: Execution
    runbook: Runbook | None
    runs: list[StepRun]
    children: list[Execution]
    approvals: dict[str, Approval] = field(default_factory=dict)


class RunScreen(Screen[None]):
    """One execution, live: step tree on the left, output of the selected step right."""

    CSS_PATH = "run.tcss"
    SCREEN_TITLE = "Run"
    HELP = """
The tree lists every step of the run's pinned runbook version. The log follows the
step under the cursor; `l` shows every step's output instead. Cancel and resume ask
first; reject needs a comment.
"""

    BINDINGS = [
        Binding(
            "escape", "back", "Back", id="back", tooltip="Back to the previous screen"
        ),
        Binding(
            "f",
            "toggle_follow",
            "Follow",
            id="follow",
            tooltip="Keep the newest line in view",
        ),
        Binding(
            "slash",
            "search_log",
            "Search",
            id="search-log",
            tooltip="Find text in the log",
        ),
        Binding(
            "l",
            "toggle_scope",
            "All steps",
            id="log-scope",
            tooltip="Log of every step, or only the selected one",
        ),
        Binding(
            "c",
            "cancel_run",
            "Cancel run",
            id="cancel-run",
            tooltip="Stop the run (asks first)",
        ),
        Binding(
            "R",
            "resume_run",
            "Resume",
            id="resume-run",
            tooltip="Resume or retry from the selected step",
        ),
        Binding(
            "y",
            "approve",
            "Approve",
            id="approve-step",
            tooltip="Approve the selected waiting step",
        ),
        Binding(
            "n",
            "reject",
            "Reject",
            id="reject-step",
            tooltip="Reject the selected waiting step (comment required)",
        ),
    ]
    """Keys of the run screen."""

    def __init__(self, execution_id: int, *, spinning: bool = True) -> None:
        super().__init__()
        self.execution_id = execution_id
        self.spinning = spinning
        """Animate the running spinner; False freezes it (snapshots)."""
        self.execution: Execution | None = None
        self.runbook: Runbook | None = None
        self.approvals: dict[str, Approval] = {}
        self.all_steps = False
        """The log shows every step's output instead of the selected step's."""
        self._loaded = False
        self._seen: tuple[Execution, list[StepRun], list[Execution]] | None = None
        """The run as last shown, to tell whether the store has news."""
        self._execution_events = 0
        """Changes of this run seen as events, so a slower read never wins."""

    # ------------------------------------------------------------------ wiring

    @property
    def services(self) -> Services:
        return cast("HalotermApp", self.app).services

    def now(self) -> datetime:
        clock = getattr(self.app, "clock", None) or self.services.clock
        return cast(datetime, clock())

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        with Horizontal(id="run-body"):
            yield StepTree(spinning=self.spinning, clock=self.now, id="steps")
            yield LogPane(self.execution_id, self.services.store, id="log-pane")
        yield Footer()

    @property
    def log_pane(self) -> LogPane:
        return self.query_one(LogPane)

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick_header)
        self.load_run()

    # ------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="load-run", exit_on_error=False)
    def load_run(self) -> None:
        """Read the execution, its pinned runbook, step rows and child runs."""
        store = self.services.store
        mark = self._execution_events
        execution = store.get_execution(self.execution_id)
        if execution is None:
            self.app.call_from_thread(
                self.notify,
                f"Run #{self.execution_id} does not exist.",
                severity="error",
                markup=False,
            )
            return
        stored = store.get_runbook(execution.runbook, execution.version)
        runs = store.step_runs(self.execution_id)
        snapshot = RunSnapshot(
            execution,
            stored.runbook if stored is not None else None,
            runs,
            store.child_executions(self.execution_id),
        )
        for run in runs:
            if run.host == "" and run.status == "waiting":
                approval = store.get_approval(self.execution_id, run.step_id)
                if approval is not None:
                    snapshot.approvals[run.step_id] = approval
        self.app.call_from_thread(self._show_snapshot, snapshot, mark)

    def _show_snapshot(self, snapshot: RunSnapshot, mark: int = -1) -> None:
        if mark != self._execution_events:
            # The run changed while this was read: the snapshot may be older than
            # what an event already said, so read again rather than go back.
            self.load_run()
        first = not self._loaded
        self._loaded = True
        self._seen = (snapshot.execution, snapshot.runs, snapshot.children)
        self.execution = snapshot.execution
        self.runbook = snapshot.runbook
        self.approvals = snapshot.approvals
        tree = self.query_one(StepTree)
        if first and snapshot.runbook is not None:
            tree.load(snapshot.runbook, snapshot.runs, snapshot.children)
        else:
            # Later refreshes update nodes in place, so the cursor stays put.
            for run in snapshot.runs:
                tree.update_step(run)
            for child in snapshot.children:
                tree.add_child_run(child)
        self._refresh_header()
        self.refresh_bindings()
        if first:
            tree.focus()
            self.log_pane.show(self._scope_for(tree.selected), force=True)

    def _scope_for(self, node: StepNode | None) -> LogScope:
        if self.all_steps or node is None:
            return LogScope()
        if node.kind == "host":
            return LogScope(node.step_id, node.host)
        return LogScope(node.step_id)

    # ------------------------------------------------------------------ live events

    def on_engine_event(self, event: Event) -> None:
        """Take one engine event; the app calls this for every event it forwards.

        Args:
            event: any :mod:`haloterm.engine.events` object; events of other runs
                are ignored, except those of this run's child runs.
        """
        if isinstance(event, LogBatch):
            if event.execution_id == self.execution_id:
                self.log_pane.queue(event.lines)
        elif isinstance(event, StepChanged):
            if event.execution_id == self.execution_id:
                # A snapshot being read now may predate this change, and a step
                # the tree does not show yet drops it: read again after showing.
                self._execution_events += 1
                self._step_changed(event)
        elif isinstance(event, ExecutionChanged):
            self._execution_changed(event)
        elif isinstance(event, ApprovalChanged):
            if event.execution_id == self.execution_id:
                self.load_run()

    def on_store_changed(self) -> None:
        """Follow a run another process owns (called by the app on any commit).

        Its steps, approvals and output reach this console through the store
        only; a run of this process is followed through engine events instead.
        """
        if self._seen is None or self.execution_id in self.services.engine.active:
            return
        self._check_store(self._seen)
        self.log_pane.catch_up()

    @work(thread=True, exclusive=True, group="run-check", exit_on_error=False)
    def _check_store(
        self, seen: tuple[Execution, list[StepRun], list[Execution]]
    ) -> None:
        store = self.services.store
        execution = store.get_execution(self.execution_id)
        runs = store.step_runs(self.execution_id)
        children = store.child_executions(self.execution_id)
        if execution is not None and (execution, runs, children) != seen:
            self.app.call_from_thread(self.load_run)

    def _step_changed(self, event: StepChanged) -> None:
        self.query_one(StepTree).update_step(event)
        if event.status in ("waiting", "passed", "failed"):
            # Approval details and output truncation live in the store, not the event.
            self.load_run()
            scope = self.log_pane.scope
            if scope is not None and scope.covers(event.step_id, event.host):
                self.reload_step_runs()
        self._refresh_header()
        self.refresh_bindings()

    def _execution_changed(self, event: ExecutionChanged) -> None:
        if event.parent_id == self.execution_id:
            tree = self.query_one(StepTree)
            if not tree.update_child_status(
                event.execution_id, event.status, event.reason
            ):
                self.load_run()
            return
        if event.execution_id != self.execution_id:
            return
        self._execution_events += 1
        if self.execution is None:
            return
        self.execution = self.execution.model_copy(
            update={
                "status": ExecutionStatus(event.status),
                "current_step": event.current_step,
                "reason": event.reason,
            }
        )
        if self.execution.status.finished:
            self.load_run()
        self._refresh_header()
        self.refresh_bindings()

    @work(thread=True, exclusive=True, group="step-runs", exit_on_error=False)
    def reload_step_runs(self) -> None:
        """Re-read step rows (truncation and sizes are not carried by events)."""
        runs = self.services.store.step_runs(self.execution_id)
        self.app.call_from_thread(self.log_pane.set_runs, runs)

    # ------------------------------------------------------------------ drawing

    def _variables(self) -> dict[str, str]:
        return self.app.theme_variables

    def _tick_header(self) -> None:
        if self.execution is not None and not self.execution.status.finished:
            self._refresh_header()

    def _refresh_header(self) -> None:
        execution = self.execution
        if execution is None:
            return
        waiting = self._waiting_step()
        node = self.query_one(StepTree).selected
        failed = None
        if node is not None and node.status == "failed" and node.reason:
            where = f"{node.step_id}@{node.host}" if node.host else node.step_id
            failed = (where, node.reason.splitlines()[0])
        text = header_text(
            execution,
            self.runbook,
            self.now(),
            waiting_step=waiting,
            approval=self.approvals.get(waiting) if waiting else None,
            failed_step=failed,
            variables=self._variables(),
        )
        self.query_one(RunHeader).update(text)

    # ------------------------------------------------------------------ tree

    @on(Tree.NodeHighlighted, "#steps")
    def _step_highlighted(self, event: Tree.NodeHighlighted[StepNode]) -> None:
        if not self._loaded:
            return
        self.log_pane.show(self._scope_for(event.node.data))
        self._refresh_header()
        self.refresh_bindings()

    @on(StepTree.ChildRunChosen)
    def _open_child(self, event: StepTree.ChildRunChosen) -> None:
        self.app.push_screen(RunScreen(event.execution_id, spinning=self.spinning))

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        execution = self.execution
        if action == "cancel_run":
            return execution is not None and not execution.status.finished
        if action == "resume_run":
            return execution is not None and execution.status in _RESUMABLE
        if action in ("approve", "reject"):
            step = self._waiting_step()
            if step is None:
                return False
            # Not the operator's to decide: the keys go dim; pressing one says why.
            return self._refusal(step) is None or None
        return True

    def _waiting_step(self) -> str | None:
        node = self.query_one(StepTree).selected
        if node is None or node.kind != "step" or node.status != "waiting":
            return None
        return node.step_id

    def _refusal(self, step: str) -> str | None:
        """Why the operator cannot decide the step's approval, or None if they can."""
        approval = self.approvals.get(step)
        if approval is None:
            return None
        operator = self.services.operator
        roles = self.services.settings.roles_of(operator)
        return refusal(approval, operator, roles, self.now())

    def on_key(self, event: events.Key) -> None:
        """y or n on a waiting step the operator may not decide: say why."""
        step = self._waiting_step() if event.key in ("y", "n") else None
        reason = self._refusal(step) if step is not None else None
        if step is not None and reason is not None:
            event.stop()
            say_refusal(self, self.approvals[step], reason)

    def action_back(self) -> None:
        """Close the search box, or go back to the previous screen."""
        if self.log_pane.close_search():
            self.query_one(StepTree).focus()
            return
        self.app.pop_screen()

    def action_toggle_follow(self) -> None:
        self.log_pane.toggle_follow()

    def action_toggle_scope(self) -> None:
        self.all_steps = not self.all_steps
        self.log_pane.show(self._scope_for(self.query_one(StepTree).selected))

    def action_search_log(self) -> None:
        self.log_pane.open_search()

    def action_cancel_run(self) -> None:
        from haloterm.screens.dialogs import ConfirmScreen

        question = (
            f"Cancel run #{self.execution_id}? Steps running now are stopped; "
            "the run ends as cancelled."
        )

        def decided(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._cancel(), group="run-action", exit_on_error=False)

        self.app.push_screen(ConfirmScreen(question, confirm="Cancel run"), decided)

    async def _cancel(self) -> None:
        engine = self.services.engine
        await engine.cancel(self.execution_id, actor=self.services.operator)
        self.notify(f"Run #{self.execution_id} cancelled.")

    def action_resume_run(self) -> None:
        from haloterm.screens.dialogs import ConfirmScreen

        node = self.query_one(StepTree).selected
        step = node.step_id if node is not None else None
        where = f"from step {step}" if step else "where it stopped"
        question = f"Resume run #{self.execution_id} {where}?"

        def decided(yes: bool | None) -> None:
            if yes:
                self.run_worker(
                    self._resume(step), group="run-action", exit_on_error=False
                )

        self.app.push_screen(ConfirmScreen(question, confirm="Resume"), decided)

    async def _resume(self, step: str | None) -> None:
        services = self.services
        new_id = await services.engine.resume(
            self.execution_id, actor=services.operator, from_step=step
        )
        self.notify(f"Run #{new_id} resumed.", markup=False)
        if new_id != self.execution_id:
            self.app.push_screen(RunScreen(new_id, spinning=self.spinning))
        else:
            self.load_run()

    def action_approve(self) -> None:
        self._ask_decision("approved")

    def action_reject(self) -> None:
        self._ask_decision("rejected")

    def _ask_decision(self, decision: Literal["approved", "rejected"]) -> None:
        from haloterm.screens.dialogs import CommentScreen

        step = self._waiting_step()
        if step is None:
            return
        approval = self.approvals.get(step)
        verb = "Approve" if decision == "approved" else "Reject"
        title = f"{verb} step {step} of run #{self.execution_id}"
        detail = approval.message if approval is not None else ""
        required = decision == "rejected"

        def answered(comment: str | None) -> None:
            if comment is None:
                return
            self.run_worker(
                self._decide(step, decision, comment or None),
                group="run-action",
                exit_on_error=False,
            )

        screen = CommentScreen(title, detail=detail, required=required)
        self.app.push_screen(screen, answered)

    async def _decide(
        self, step: str, decision: Literal["approved", "rejected"], comment: str | None
    ) -> None:
        from haloterm.storage import ApprovalRefused

        services = self.services
        try:
            await services.engine.decide(
                self.execution_id,
                step,
                actor=services.operator,
                decision=decision,
                comment=comment,
            )
        except ApprovalRefused as refused:
            self.notify(
                str(refused), title="Not recorded", severity="error", markup=False
            )
            return
        self.notify(f"Step {step} {decision}.", markup=False)
        self.load_run()
