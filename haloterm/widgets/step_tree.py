"""The tree of a run's steps: status, duration and reason of each, live.

Every step of the pinned runbook is a node, in file order. A fan-out step gets one child
per host; a ``runbook`` step gets one child per child run. Steps reached only on
failure are drawn dim until they run. The running spinner advances on a timer unless
the tree is frozen (snapshots, ``animation_level == "none"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from haloterm.models import Execution, Runbook
from haloterm.widgets.status import elapsed, format_duration, status_text

NodeKind = Literal["step", "host", "child"]

STATUS_WIDTH = 11
"""Cells given to the status glyph and word, so titles line up."""
_DIM = Style(dim=True)


class StepState(Protocol):
    """What the tree reads from a ``StepRun`` row or a ``StepChanged`` event."""

    @property
    def step_id(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...


@dataclass
class StepNode:
    """What one node of the tree stands for, and its last known state."""

    kind: NodeKind
    step_id: str
    host: str = ""
    title: str = ""
    action: str = ""
    status: str = "pending"
    reason: str | None = None
    attempts: int = 0
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    only_on_failure: bool = False
    execution_id: int | None = None
    """For a child run: its execution id."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class StepTree(Tree[StepNode]):
    """Steps of one execution with their status glyph, word, duration and reason."""

    DEFAULT_CSS = """
    StepTree {
        background: $surface;
        padding: 0 1;
        overflow-x: hidden;
    }
    """

    BINDINGS = [
        Binding("enter", "select_cursor", "Open", show=False, id="tree-open"),
    ]

    class ChildRunChosen(Message):
        """Enter was pressed on a child run's node."""

        def __init__(self, tree: StepTree, execution_id: int) -> None:
            super().__init__()
            self.tree = tree
            self.execution_id = execution_id

        @property
        def control(self) -> StepTree:
            return self.tree

    def __init__(
        self,
        *,
        spinning: bool = True,
        clock: Callable[[], datetime] = _utc_now,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__("steps", name=name, id=id, classes=classes)
        self.show_root = False
        self.guide_depth = 3
        self.auto_expand = False
        self.spinning = spinning
        """Advance the running spinner on a timer; False freezes it at frame 0."""
        self.clock = clock
        """Where "now" comes from for the duration of running steps."""
        self.frame = 0
        self._steps: dict[str, TreeNode[StepNode]] = {}
        self._hosts: dict[tuple[str, str], TreeNode[StepNode]] = {}
        self._children: dict[int, TreeNode[StepNode]] = {}
        self._timer: Timer | None = None
        self.follow = True
        """Move the cursor to the step that starts running or waiting, until the
        operator moves it themselves."""

    def on_mount(self) -> None:
        if self.spinning and self.app.animation_level != "none":
            self._timer = self.set_interval(0.1, self._tick)

    # ------------------------------------------------------------------ building

    def load(
        self,
        runbook: Runbook,
        runs: Iterable[StepState] = (),
        children: Iterable[Execution] = (),
    ) -> None:
        """Show a runbook's steps, then the stored state of each and child runs."""
        self.clear()
        self._steps.clear()
        self._hosts.clear()
        self._children.clear()
        for step in runbook.steps:
            data = StepNode(
                "step",
                step.id,
                title=step.title,
                action=step.action,
                only_on_failure=step.only_on_failure,
            )
            self._steps[step.id] = self.root.add(
                self._label(data), data=data, expand=True, allow_expand=False
            )
        for run in runs:
            self.update_step(run)
        for child in children:
            self.add_child_run(child)
        if self._steps and self.cursor_line < 0:
            self.move_cursor(next(iter(self._steps.values())))

    def step_ids(self) -> list[str]:
        """Step ids in the order shown."""
        return list(self._steps)

    def node_for(self, step_id: str, host: str = "") -> TreeNode[StepNode] | None:
        """The node of a step, or of one host of it."""
        if host:
            return self._hosts.get((step_id, host))
        return self._steps.get(step_id)

    def child_node(self, execution_id: int) -> TreeNode[StepNode] | None:
        """The node of a child run."""
        return self._children.get(execution_id)

    @property
    def selected(self) -> StepNode | None:
        """What the cursor is on."""
        node = self.cursor_node
        return node.data if node is not None else None

    # ------------------------------------------------------------------ updates

    def update_step(self, state: StepState) -> None:
        """Apply a step's (or one host's) new state; unknown steps are ignored."""
        parent = self._steps.get(state.step_id)
        if parent is None or parent.data is None:
            return
        node = parent
        if state.host:
            node = self._host_node(parent, state.step_id, state.host)
        data = node.data
        assert data is not None
        data.status = str(state.status)
        data.reason = state.reason
        data.attempts = state.attempts
        data.exit_code = state.exit_code
        data.started_at = state.started_at
        data.finished_at = state.finished_at
        node.set_label(self._label(data))
        self._ensure_ticking()
        if self.follow and not state.host and data.status in ("running", "waiting"):
            self.move_cursor(node, animate=False)

    def _host_node(
        self, parent: TreeNode[StepNode], step_id: str, host: str
    ) -> TreeNode[StepNode]:
        node = self._hosts.get((step_id, host))
        if node is None:
            data = StepNode("host", step_id, host=host, title=host)
            node = parent.add_leaf(self._label(data), data=data)
            self._hosts[(step_id, host)] = node
            parent.allow_expand = True
            parent.expand()
        return node

    def add_child_run(self, execution: Execution) -> None:
        """Show a child run under the step that started it (or update it)."""
        node = self._children.get(execution.id)
        if node is None:
            parent = self._steps.get(execution.parent_step or "")
            if parent is None:
                return
            data = StepNode(
                "child",
                execution.parent_step or "",
                title=f"run #{execution.id} {execution.runbook}",
                action="runbook",
                execution_id=execution.id,
            )
            node = parent.add_leaf(self._label(data), data=data)
            self._children[execution.id] = node
            parent.allow_expand = True
            parent.expand()
        child = node.data
        assert child is not None
        child.status = str(execution.status)
        child.reason = execution.reason
        child.started_at = execution.started_at
        child.finished_at = execution.finished_at
        node.set_label(self._label(child))
        self._ensure_ticking()

    def update_child_status(
        self, execution_id: int, status: str, reason: str | None = None
    ) -> bool:
        """Change a shown child run's status; returns whether it is shown."""
        node = self._children.get(execution_id)
        if node is None or node.data is None:
            return False
        node.data.status = status
        node.data.reason = reason
        node.set_label(self._label(node.data))
        return True

    # ------------------------------------------------------------------ spinner

    def freeze(self) -> None:
        """Stop the spinner at frame 0 (for snapshots)."""
        self.spinning = False
        self.frame = 0
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.refresh_labels()

    def _ensure_ticking(self) -> None:
        if self._timer is None and self.spinning and self.is_mounted:
            if self.app.animation_level != "none":
                self._timer = self.set_interval(0.1, self._tick)

    def _tick(self) -> None:
        self.frame += 1
        running = False
        for node in self._all_nodes():
            data = node.data
            if data is not None and data.status == "running":
                running = True
                node.set_label(self._label(data))
        if not running and self._timer is not None:
            self._timer.stop()
            self._timer = None

    def refresh_labels(self) -> None:
        """Redraw every label (after a clock change or a theme change)."""
        for node in self._all_nodes():
            if node.data is not None:
                node.set_label(self._label(node.data))

    def _all_nodes(self) -> Iterable[TreeNode[StepNode]]:
        yield from self._steps.values()
        yield from self._hosts.values()
        yield from self._children.values()

    # ------------------------------------------------------------------ labels

    def _label(self, data: StepNode) -> Text:
        variables = self.app.theme_variables if self.is_attached else None
        unreached = data.only_on_failure and data.status == "pending"
        label = status_text(data.status, frame=self.frame, variables=variables)
        label.pad_right(max(STATUS_WIDTH, label.cell_len + 1) - label.cell_len)
        label.append_text(Text(data.title, style=_DIM if unreached else ""))
        if data.kind == "step":
            label.append(f" · {data.action}", style=_DIM)
        if unreached:
            label.append(" (on failure)", style=Style(dim=True, italic=True))
        reason = data.reason.splitlines()[0] if data.reason else ""
        if reason and data.status != "passed":
            label.append(" — ", style=_DIM)
            label.append(reason)
        details = self._details(data, reason)
        if details:
            label.append("  " + details, style=_DIM)
        return label

    def _details(self, data: StepNode, reason: str) -> str:
        parts: list[str] = []
        seconds = elapsed(data.started_at, data.finished_at, self.clock())
        if seconds is not None:
            parts.append(format_duration(seconds))
        if data.attempts > 1:
            parts.append(f"attempt {data.attempts}")
        if data.exit_code not in (None, 0) and f"exit {data.exit_code}" not in reason:
            parts.append(f"exit {data.exit_code}")
        return " ".join(parts)

    # ------------------------------------------------------------------ keys

    # The operator moving the cursor stops it following the run.

    def action_cursor_up(self) -> None:
        self.follow = False
        super().action_cursor_up()

    def action_cursor_down(self) -> None:
        self.follow = False
        super().action_cursor_down()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    def action_page_down(self) -> None:
        self.follow = False
        super().action_page_down()

    def action_scroll_home(self) -> None:
        self.follow = False
        super().action_scroll_home()

    def action_scroll_end(self) -> None:
        self.follow = False
        super().action_scroll_end()

    async def _on_click(self, event: events.Click) -> None:
        self.follow = False
        await super()._on_click(event)

    def action_select_cursor(self) -> None:
        node = self.cursor_node
        if node is not None and node.data is not None and node.data.kind == "child":
            execution_id = node.data.execution_id
            if execution_id is not None:
                self.post_message(self.ChildRunChosen(self, execution_id))
                return
        super().action_select_cursor()
