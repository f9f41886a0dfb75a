"""The live run screen: every step's status, the selected step's output, and the keys
that act on a run (cancel, resume, approve, reject).

Engine events reach this screen through :meth:`RunScreen.on_engine_event`, which the
app calls for every event while the screen is on the stack. Store reads happen in
thread workers; the screen never waits on a step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, cast

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, Tree
from textual.worker import get_current_worker

from haloterm.engine.events import (
    ApprovalChanged,
    Event,
    ExecutionChanged,
    LogBatch,
    LogLine,
    StepChanged,
)
from haloterm.models import Execution, ExecutionStatus, Runbook, StepRun, StepStatus
from haloterm.widgets.log_view import LogView
from haloterm.widgets.status import elapsed, format_duration, format_size, status_text
from haloterm.widgets.step_tree import StepNode, StepTree

if TYPE_CHECKING:
    from haloterm.app import HalotermApp
    from haloterm.services import Services
    from haloterm.storage import Approval

logger = logging.getLogger(__name__)

LOG_PAGE = 1000
"""Stored log lines read per query when loading a step's history."""

_RESUMABLE = frozenset({"failed", "interrupted", "cancelled"})


@dataclass
class RunSnapshot:
    """What the screen loads from the store in one go."""

    execution: Execution
    runbook: Runbook | None
    runs: list[StepRun]
    children: list[Execution]
    approvals: dict[str, Approval] = field(default_factory=dict)


@dataclass(frozen=True)
class LogScope:
    """Which lines the log pane shows: one step (one host of it), or every step."""

    step_id: str | None = None
    host: str | None = None

    def matches(self, line: LogLine) -> bool:
        if self.step_id is not None and line.step_id != self.step_id:
            return False
        return self.host is None or line.host == self.host


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
        self.runs: dict[tuple[str, str], StepRun] = {}
        self.approvals: dict[str, Approval] = {}
        self.scope = LogScope()
        self.all_steps = False
        self._pending: list[LogLine] = []
        self._flush_scheduled = False
        self._loading_logs = False
        self._loaded = False

    # ------------------------------------------------------------------ wiring

    @property
    def services(self) -> Services:
        return cast("HalotermApp", self.app).services

    def now(self) -> datetime:
        clock = getattr(self.app, "clock", None) or self.services.clock
        return cast(datetime, clock())

    def compose(self) -> ComposeResult:
        yield Static(id="run-header")
        with Horizontal(id="run-body"):
            yield StepTree(spinning=self.spinning, clock=self.now, id="steps")
            with Vertical(id="log-pane"):
                yield Static(id="log-title")
                yield Static(id="log-banner")
                yield LogView(id="log")
                yield Input(placeholder="Find in log; Enter for next", id="log-search")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log-search", Input).display = False
        self.query_one("#log-banner", Static).display = False
        self.set_interval(1.0, self._tick_header)
        self.load_run()

    # ------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="load-run", exit_on_error=False)
    def load_run(self) -> None:
        """Read the execution, its pinned runbook, step rows and child runs."""
        store = self.services.store
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
        self.app.call_from_thread(self._show_snapshot, snapshot)

    def _show_snapshot(self, snapshot: RunSnapshot) -> None:
        first = not self._loaded
        self._loaded = True
        self.execution = snapshot.execution
        self.runbook = snapshot.runbook
        self.runs = {(r.step_id, r.host): r for r in snapshot.runs}
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
            self._set_scope(self._scope_for(tree.selected), force=True)

    def _scope_for(self, node: StepNode | None) -> LogScope:
        if self.all_steps or node is None:
            return LogScope()
        if node.kind == "host":
            return LogScope(node.step_id, node.host)
        return LogScope(node.step_id)

    def _set_scope(self, scope: LogScope, *, force: bool = False) -> None:
        if scope == self.scope and not force:
            return
        self.scope = scope
        view = self.query_one(LogView)
        view.clear()
        view.show_source = scope.step_id is None
        self._pending = [line for line in self._pending if scope.matches(line)]
        self._loading_logs = True
        self._refresh_log_title()
        self.load_logs(scope)

    @work(thread=True, exclusive=True, group="load-logs", exit_on_error=False)
    def load_logs(self, scope: LogScope) -> None:
        """Read the stored lines of the scope a page at a time, oldest first."""
        worker = get_current_worker()
        store = self.services.store
        after = 0
        while not worker.is_cancelled:
            page = store.get_logs(
                self.execution_id,
                step_id=scope.step_id,
                host=scope.host,
                after_seq=after,
                limit=LOG_PAGE,
            )
            if page:
                after = page[-1].seq
                self.app.call_from_thread(self._append_page, scope, page)
            if len(page) < LOG_PAGE:
                break
        runs = store.step_runs(self.execution_id)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._logs_loaded, scope, runs)

    def _append_page(self, scope: LogScope, page: Sequence[LogLine]) -> None:
        if scope == self.scope:
            self.query_one(LogView).append(page)

    def _logs_loaded(self, scope: LogScope, runs: Sequence[StepRun]) -> None:
        if scope != self.scope:
            return
        for run in runs:
            self.runs[(run.step_id, run.host)] = run
        self._loading_logs = False
        self._flush_logs()
        self._refresh_banner()

    # ------------------------------------------------------------------ live events

    def on_engine_event(self, event: Event) -> None:
        """Take one engine event; the app calls this for every event it forwards.

        Args:
            event: any :mod:`haloterm.engine.events` object; events of other runs
                are ignored, except those of this run's child runs.
        """
        if isinstance(event, LogBatch):
            if event.execution_id == self.execution_id:
                self._queue_lines(event.lines)
        elif isinstance(event, StepChanged):
            if event.execution_id == self.execution_id:
                self._step_changed(event)
        elif isinstance(event, ExecutionChanged):
            self._execution_changed(event)
        elif isinstance(event, ApprovalChanged):
            if event.execution_id == self.execution_id:
                self.load_run()

    def _queue_lines(self, lines: Sequence[LogLine]) -> None:
        scope = self.scope
        self._pending.extend(line for line in lines if scope.matches(line))
        # Batches that arrive in the same turn of the loop are drawn once.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.call_later(self._flush_logs)

    def _flush_logs(self) -> None:
        self._flush_scheduled = False
        if self._loading_logs or not self._pending:
            return
        pending, self._pending = self._pending, []
        self.query_one(LogView).append(pending)

    def _step_changed(self, event: StepChanged) -> None:
        self.query_one(StepTree).update_step(event)
        known = self.runs.get((event.step_id, event.host))
        if known is not None:
            self.runs[(event.step_id, event.host)] = known.model_copy(
                update={"status": StepStatus(event.status), "reason": event.reason}
            )
        if event.status == "waiting" or event.status in ("passed", "failed"):
            # Approval details and output truncation live in the store, not the event.
            self.load_run()
            if self.scope.step_id in (None, event.step_id):
                self.reload_step_runs()
        self.refresh_bindings()

    def _execution_changed(self, event: ExecutionChanged) -> None:
        if event.parent_id == self.execution_id:
            tree = self.query_one(StepTree)
            if not tree.update_child_status(
                event.execution_id, event.status, event.reason
            ):
                self.load_run()
            return
        if event.execution_id != self.execution_id or self.execution is None:
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
        self.app.call_from_thread(self._apply_runs, runs)

    def _apply_runs(self, runs: Sequence[StepRun]) -> None:
        for run in runs:
            self.runs[(run.step_id, run.host)] = run
        self._refresh_banner()

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
        runbook = self.runbook
        title = runbook.display_title if runbook is not None else execution.runbook
        text = Text()
        text.append(title, style=Style(bold=True))
        text.append(f"  v{execution.version} · run #{execution.id}  ")
        text.append_text(status_text(execution.status, variables=self._variables()))
        text.append("\n")
        text.append(f"operator {execution.operator} · trigger {execution.trigger}")
        if execution.ticket_id is not None:
            text.append(f" · ticket #{execution.ticket_id}")
        if execution.parent_id is not None:
            text.append(f" · child of run #{execution.parent_id}")
        seconds = elapsed(execution.started_at, execution.finished_at, self.now())
        if seconds is not None:
            text.append(f" · elapsed {format_duration(seconds)}")
        if execution.reason:
            text.append("\n")
            text.append(execution.reason.splitlines()[0], style=Style(italic=True))
        self._append_approval(text)
        self.query_one("#run-header", Static).update(text)

    def _append_approval(self, text: Text) -> None:
        node = self.query_one(StepTree).selected
        if node is None or node.kind != "step" or node.status != "waiting":
            return
        approval = self.approvals.get(node.step_id)
        text.append("\n")
        text.append_text(status_text("waiting", variables=self._variables()))
        text.append(f" approval for {node.step_id}")
        if approval is not None:
            text.append(": ")
            text.append(approval.message)
            who = ", ".join(approval.approvers)
            text.append(f" (approvers: {who})", style=Style(dim=True))
        text.append("  y approve · n reject", style=Style(bold=True))

    def _refresh_log_title(self) -> None:
        scope = self.scope
        label = Text("Output: ", style=Style(bold=True))
        if scope.step_id is None:
            label.append("every step")
        else:
            label.append(scope.step_id)
            if scope.host:
                label.append(f" @ {scope.host}")
        view = self.query_one(LogView)
        label.append(
            " · following" if view.follow else " · paused (f to follow)",
            style=Style(dim=True),
        )
        self.query_one("#log-title", Static).update(label)

    def _refresh_banner(self) -> None:
        banner = self.query_one("#log-banner", Static)
        runs = [
            run
            for (step_id, host), run in self.runs.items()
            if run.output_truncated
            and self.scope.step_id in (None, step_id)
            and self.scope.host in (None, host)
        ]
        if not runs:
            banner.display = False
            return
        size = sum(run.output_bytes for run in runs)
        shown = self.query_one(LogView).line_count
        text = Text(
            f"output truncated: {format_size(size)}, showing last {shown:,} lines"
        )
        files = [run.output_file for run in runs if run.output_file]
        if files:
            text.append(f" · full output: {files[0]}", style=Style(dim=True))
        banner.update(text)
        banner.display = True

    # ------------------------------------------------------------------ tree

    @on(Tree.NodeHighlighted, "#steps")
    def _step_highlighted(self, event: Tree.NodeHighlighted[StepNode]) -> None:
        if not self._loaded:
            return
        self._set_scope(self._scope_for(event.node.data))
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
            return self._waiting_step() is not None
        return True

    def _waiting_step(self) -> str | None:
        node = self.query_one(StepTree).selected
        if node is None or node.kind != "step" or node.status != "waiting":
            return None
        return node.step_id

    def action_back(self) -> None:
        """Close the search box, or go back to the previous screen."""
        search = self.query_one("#log-search", Input)
        if search.display:
            search.display = False
            self.query_one(StepTree).focus()
            return
        self.app.pop_screen()

    def action_toggle_follow(self) -> None:
        view = self.query_one(LogView)
        view.follow = not view.follow
        self._refresh_log_title()

    def action_toggle_scope(self) -> None:
        self.all_steps = not self.all_steps
        self._set_scope(self._scope_for(self.query_one(StepTree).selected))

    def action_search_log(self) -> None:
        search = self.query_one("#log-search", Input)
        search.display = True
        search.focus()

    @on(Input.Submitted, "#log-search")
    def _search(self, event: Input.Submitted) -> None:
        view = self.query_one(LogView)
        if not view.find(event.value):
            self.notify(f"Not found: {event.value}", severity="warning", markup=False)
        self._refresh_log_title()

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
