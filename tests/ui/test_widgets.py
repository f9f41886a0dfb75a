"""StepTree, LogView and the status helpers, each in a tiny app of its own."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from textual.app import App, ComposeResult
from textual.message import Message

from haloterm.engine.events import LogLine
from haloterm.models import Execution, ExecutionStatus, Runbook, StepRun, StepStatus
from haloterm.widgets.log_view import LogView, clean_line
from haloterm.widgets.run_header import header_text, truncation_text
from haloterm.widgets.status import (
    SPINNER,
    format_duration,
    format_size,
    status_style,
    status_text,
)
from haloterm.widgets.step_tree import StepTree

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

RUNBOOK = Runbook.model_validate(
    {
        "name": "restart-web",
        "title": "Restart the web tier",
        "steps": [
            {"id": "check", "name": "Check health", "action": "http"},
            {"id": "restart", "action": "ssh"},
            {"id": "child", "action": "runbook"},
            {"id": "rollback", "action": "shell", "only_on_failure": True},
        ],
    }
)

C01 = [
    "\x1b[0;32mok=12\x1b[0m \x1b[1;31mfailed=1\x1b[0m",
    "before\x1b[2K\x1b[1Aafter",
    "\x1b]0;owned-title\x07title",
    "\x1b]52;c;ZWNobyBoaQ==\x07clip",
    "\x1b[2J\x1b[Hclear",
]


def lines(texts: Iterable[str], *, start: int = 1, step: str = "s1") -> list[LogLine]:
    return [
        LogLine(1, step, "", "stdout", start + i, T0, text)
        for i, text in enumerate(texts)
    ]


class TreeApp(App[None]):
    def __init__(self, *, animate: bool = False) -> None:
        super().__init__()
        self.now = T0
        self.animate_tree = animate
        self.messages: list[Message] = []

    def compose(self) -> ComposeResult:
        yield StepTree(spinning=self.animate_tree, clock=lambda: self.now)

    def on_step_tree_child_run_chosen(self, message: StepTree.ChildRunChosen) -> None:
        self.messages.append(message)


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LogView(max_lines=50, max_line_chars=40)


def label_of(tree: StepTree, step_id: str, host: str = "") -> str:
    node = tree.node_for(step_id, host)
    assert node is not None
    return str(node.label)


def rendered(view: LogView, y: int) -> str:
    return "".join(segment.text for segment in view.render_line(y)).rstrip()


# ---------------------------------------------------------------------- status


def test_status_text_carries_glyph_and_word() -> None:
    assert status_text("passed").plain == "✔ passed"
    assert status_text("failed").plain == "✘ failed"
    assert status_text("waiting").plain == "⏸ waiting"
    assert status_text("timed_out").plain == "⌛ timed out"
    assert status_text("running", frame=3).plain == f"{SPINNER[3]} running"


def test_status_style_reads_theme_variables() -> None:
    style = status_style("passed", {"success": "#123456"})
    assert style.color is not None and style.color.triplet is not None
    assert style.color.triplet.hex == "#123456"
    assert status_style("skipped").dim
    # A variable that is not a colour (``auto 60%``) falls back instead of failing.
    assert status_style("pending", {"text-muted": "auto 60%"}).color is not None


def test_format_duration_and_size() -> None:
    assert format_duration(0.25) == "250ms"
    assert format_duration(12.34) == "12.3s"
    assert format_duration(245) == "4m05s"
    assert format_duration(7380) == "2h03m"
    assert format_size(512) == "512 B"
    assert format_size(60_000_000) == "60.0 MB"


# ---------------------------------------------------------------------- StepTree


async def test_tree_shows_every_step_in_order_and_dims_failure_only() -> None:
    app = TreeApp()
    async with app.run_test(size=(100, 20)) as pilot:
        tree = app.query_one(StepTree)
        tree.load(RUNBOOK)
        await pilot.pause()
        assert tree.step_ids() == ["check", "restart", "child", "rollback"]
        assert label_of(tree, "check").startswith("○ pending")
        assert "Check health · http" in label_of(tree, "check")
        assert "(on failure)" in label_of(tree, "rollback")
        assert "(on failure)" not in label_of(tree, "restart")


async def test_tree_applies_states_with_duration_reason_and_hosts() -> None:
    app = TreeApp()
    async with app.run_test(size=(100, 20)) as pilot:
        tree = app.query_one(StepTree)
        passed = StepRun(
            execution_id=1,
            step_id="check",
            status=StepStatus.PASSED,
            attempts=1,
            started_at=T0,
            finished_at=T0 + timedelta(seconds=1.5),
        )
        failed = StepRun(
            execution_id=1,
            step_id="restart",
            host="web-02",
            status=StepStatus.FAILED,
            reason="exit 3",
            exit_code=3,
            attempts=2,
            started_at=T0,
            finished_at=T0 + timedelta(seconds=65),
        )
        tree.load(RUNBOOK, [passed, failed])
        await pilot.pause()
        assert label_of(tree, "check").startswith("✔ passed")
        assert "1.5s" in label_of(tree, "check")
        host = label_of(tree, "restart", "web-02")
        assert host.startswith("✘ failed")
        assert "1m05s" in host and "attempt 2" in host and "exit 3" in host
        assert "— exit 3" in host
        node = tree.node_for("restart")
        assert node is not None and node.is_expanded
        # A running step's duration comes from the injected clock.
        running = StepRun(
            execution_id=1, step_id="rollback", status="running", started_at=T0
        )
        app.now = T0 + timedelta(seconds=42)
        tree.update_step(running)
        assert label_of(tree, "rollback").startswith(f"{SPINNER[0]} running")
        assert "42.0s" in label_of(tree, "rollback")
        assert "(on failure)" not in label_of(tree, "rollback")


async def test_tree_shows_untrusted_reason_literally() -> None:
    app = TreeApp()
    async with app.run_test(size=(100, 20)) as pilot:
        tree = app.query_one(StepTree)
        tree.load(RUNBOOK)
        reason = "[ERROR] [/etc/nginx/nginx.conf] failed"
        tree.update_step(
            StepRun(execution_id=1, step_id="check", status="failed", reason=reason)
        )
        await pilot.pause()
        assert label_of(tree, "check").endswith(reason)


async def test_spinner_advances_only_when_animated() -> None:
    app = TreeApp(animate=False)
    async with app.run_test(size=(100, 20)):
        tree = app.query_one(StepTree)
        tree.load(RUNBOOK)
        tree.update_step(StepRun(execution_id=1, step_id="check", status="running"))
        assert tree._timer is None
        tree.frame = 4
        tree.freeze()
        assert label_of(tree, "check").startswith(SPINNER[0])

    app = TreeApp(animate=True)
    async with app.run_test(size=(100, 20)):
        tree = app.query_one(StepTree)
        tree.load(RUNBOOK)
        tree.update_step(StepRun(execution_id=1, step_id="check", status="running"))
        assert tree._timer is not None
        tree._tick()
        assert label_of(tree, "check").startswith(SPINNER[1])
        tree.update_step(StepRun(execution_id=1, step_id="check", status="passed"))
        tree._tick()
        assert tree._timer is None


async def test_child_run_nests_under_its_step_and_enter_opens_it() -> None:
    app = TreeApp()
    async with app.run_test(size=(100, 20)) as pilot:
        tree = app.query_one(StepTree)
        child = Execution(
            id=7,
            runbook="rollback-web",
            version=1,
            status=ExecutionStatus.RUNNING,
            operator="alice",
            parent_id=1,
            parent_step="child",
            created_at=T0,
        )
        tree.load(RUNBOOK, children=[child])
        await pilot.pause()
        node = tree.child_node(7)
        assert node is not None and node.parent is tree.node_for("child")
        assert "run #7 rollback-web" in str(node.label)
        assert tree.update_child_status(7, "succeeded")
        assert str(node.label).startswith("✔ succeeded")
        tree.move_cursor(node)
        tree.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert [m.execution_id for m in app.messages] == [7]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- LogView


def test_clean_line_keeps_sgr_only() -> None:
    text, cut = clean_line(C01[0])
    assert cut == 0 and "\x1b[0;32m" in text
    for raw in C01[1:]:
        cleaned, _ = clean_line(raw)
        assert "\x1b" not in cleaned and "\x07" not in cleaned
    assert "ZWNo" not in clean_line(C01[3])[0]


async def test_log_view_renders_colours_and_strips_controls() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(LogView)
        view.append(lines(C01 + ["[ERROR] [/etc/nginx/nginx.conf] failed"]))
        await pilot.pause()
        shown = [rendered(view, y) for y in range(6)]
        assert shown[0] == "ok=12 failed=1"
        assert shown[1] == "beforeafter"
        assert shown[2] == "title"
        assert shown[3] == "clip"
        assert shown[4] == "clear"
        assert shown[5] == "[ERROR] [/etc/nginx/nginx.conf] failed"
        first = [s for s in view.render_line(0) if s.text.startswith("ok=12")]
        assert first and first[0].style is not None
        assert first[0].style.color is not None
        assert first[0].style.color.number == 2  # ANSI green


async def test_log_view_is_bounded_cuts_long_lines_and_skips_seen() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 10)) as pilot:
        view = app.query_one(LogView)
        assert view.append(lines(f"line {i}" for i in range(120))) == 120
        assert view.line_count == 50 and view.dropped == 70
        assert view.plain_lines()[0] == "line 70"
        # Lines already shown (by seq) are skipped: history and live may overlap.
        assert view.append(lines(["again"], start=100)) == 0
        assert view.append(lines(["x" * 3_000_000], start=121)) == 1
        await pilot.pause()
        last = view.entries[-1]
        assert len(last.text) == 40 and last.cut == 3_000_000 - 40
        assert view.follow and view.scroll_offset.y == view.max_scroll_y


async def test_following_shows_the_last_line_when_a_wide_one_brings_a_scrollbar() -> (
    None
):
    """The horizontal scrollbar a wide line brings takes rows: the last line stays
    in view all the same."""
    app = LogApp()
    async with app.run_test(size=(40, 10)) as pilot:
        view = app.query_one(LogView)
        view.append(lines(f"line {i}" for i in range(30)))
        await pilot.pause()
        view.append(lines(["a" * 39 + "z" * 30, "END-MARK"], start=31))
        await pilot.pause()
        await pilot.pause()
        height = view.scrollable_content_region.height
        assert height < 10  # the scrollbar is there
        assert rendered(view, height - 1) == "END-MARK"


async def test_log_view_search_and_sources() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 10)) as pilot:
        view = app.query_one(LogView)
        view.append(lines(["alpha", "beta", "Alpha again", "gamma"]))
        assert view.find("ALPHA") and view.match_index == 0
        assert not view.follow
        assert view.find("alpha") and view.match_index == 2
        assert view.find("alpha") and view.match_index == 0
        assert view.find("alpha", backwards=True) and view.match_index == 2
        assert not view.find("delta") and view.match_index is None
        view.show_source = True
        await pilot.pause()
        assert rendered(view, 1).startswith("s1")
        assert rendered(view, 1).endswith("│ beta")
        view.clear()
        assert view.line_count == 0 and view.last_seq == 0


# ---------------------------------------------------------------------- run header


def test_header_text_says_everything_in_words() -> None:
    execution = Execution(
        id=12,
        runbook="restart-web",
        version=3,
        status=ExecutionStatus.FAILED,
        operator="alice",
        trigger="rule",
        ticket_id=7,
        parent_id=4,
        reason="step restart failed: [/etc] exit 1",
        created_at=T0,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=75),
    )
    text = header_text(
        execution,
        RUNBOOK,
        T0 + timedelta(hours=1),
        failed_step=("restart@web-02", "exit 1"),
    ).plain
    assert text.splitlines() == [
        "Restart the web tier  v3 · run #12  ✘ failed",
        "operator alice · trigger rule · ticket #7 · child of run #4 · elapsed 1m15s",
        "step restart failed: [/etc] exit 1",
        "✘ failed restart@web-02: exit 1",
    ]


def test_truncation_text_only_when_output_was_lost() -> None:
    kept = StepRun(execution_id=1, step_id="a", output_bytes=10)
    lost = StepRun(
        execution_id=1,
        step_id="b",
        output_bytes=60_000_000,
        output_truncated=True,
        output_file="/data/output/1-b.log",
    )
    assert truncation_text([kept], 10) is None
    text = truncation_text([kept, lost], 5000)
    assert text is not None
    assert text.plain == (
        "output truncated: 60.0 MB, showing last 5,000 lines"
        " · full output: /data/output/1-b.log"
    )
