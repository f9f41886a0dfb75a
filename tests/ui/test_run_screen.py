"""The run screen, driven by real runs of small runbooks in a real store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, Static

from haloterm.app import HalotermApp, create_app
from haloterm.engine.events import LogBatch, LogLine, StepChanged
from haloterm.screens.dialogs import CommentScreen, ConfirmScreen
from haloterm.screens.run import RunScreen
from haloterm.services import Services
from haloterm.widgets.log_view import MAX_LINE_CHARS, MAX_LINES, LogView
from haloterm.widgets.step_tree import StepTree
from tests.ui.conftest import wait_for

SIZE = (100, 30)

COLOURS = r"""
name: colours
title: Colours and brackets
steps:
  - id: colours
    action: shell
    with:
      command: |
        printf '\033[0;32mok=12\033[0m \033[1;31mfailed=1\033[0m\n'
        printf 'before\033[2K\033[1Aafter\n'
        printf '\033]0;owned-title\007title\n'
        printf '\033]52;c;ZWNobyBoaQ==\007clip\n'
        printf '\033[2J\033[Hclear\n'
        echo '[ERROR] [/etc/nginx/nginx.conf] failed'
  - id: soft-fail
    action: shell
    with: {command: "echo going down; exit 3"}
    on_failure: continue
  - id: cleanup
    action: shell
    only_on_failure: true
    with: {command: "echo cleaning"}
"""

SLOW = """
name: slow
steps:
  - id: nap
    action: wait
    with: {duration: 60s}
  - id: after
    action: shell
    with: {command: "echo after"}
"""

RETRY = """
name: retry-me
steps:
  - id: first
    action: shell
    with: {command: "echo first"}
  - id: check
    action: shell
    with: {command: "test -f {{ params.marker }}"}
params:
  marker: {type: string, required: true}
"""

APPROVE = """
name: gated
steps:
  - id: ask
    action: approval
    with:
      approvers: ["alice"]
      message: "Restart [/var] now?"
      allow_self_approval: true
  - id: done
    action: shell
    with: {command: "echo done"}
"""

LEAD_ONLY = """
name: lead-gated
steps:
  - id: ask
    action: approval
    with: {approvers: ["role:lead"], message: "Lead says?"}
"""

PARENT = """
name: parent
steps:
  - id: call
    action: runbook
    with: {runbook: child}
"""

CHILD = """
name: child
steps:
  - id: hello
    action: shell
    with: {command: "echo from child"}
"""


def add_runbook(services: Services, tmp_path: Path, text: str) -> str:
    path = tmp_path / "books" / f"{abs(hash(text))}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip(), encoding="utf-8")
    return services.import_runbook(path).name


def current(app: HalotermApp) -> Screen[Any]:
    return app.screen


def run_screen(app: HalotermApp) -> RunScreen:
    screen = app.screen
    assert isinstance(screen, RunScreen), screen
    return screen


def label(screen: RunScreen, step_id: str, host: str = "") -> str:
    node = screen.query_one(StepTree).node_for(step_id, host)
    assert node is not None
    return str(node.label)


def header(screen: RunScreen) -> str:
    return str(screen.query_one("#run-header").render())


def finished(screen: RunScreen) -> Callable[[], bool]:
    def check() -> bool:
        execution = screen.execution
        return execution is not None and execution.status.finished

    return check


Scenario = Callable[[Pilot[None], HalotermApp], Awaitable[None]]


async def drive(services: Services, scenario: Scenario) -> None:
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await scenario(pilot, app)


async def open_run(
    pilot: Pilot[None], app: HalotermApp, runbook: str, **params: Any
) -> RunScreen:
    execution_id = await app.services.engine.start(
        runbook, params, operator=app.services.operator
    )
    await app.push_screen(RunScreen(execution_id))
    await pilot.pause()
    return run_screen(app)


async def test_live_run_shows_statuses_and_sanitised_log(
    services: Services, tmp_path: Path
) -> None:
    add_runbook(services, tmp_path, COLOURS)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "colours")
        await wait_for(pilot, finished(screen), what="run end")
        # The cursor followed the run to its last step; back to the first one.
        await pilot.press("home")
        await wait_for(
            pilot,
            lambda: "failed" in label(screen, "soft-fail"),
            what="step states",
        )
        assert label(screen, "colours").startswith("✔ passed")
        assert label(screen, "soft-fail").startswith("✘ failed")
        assert "exit 3" in label(screen, "soft-fail")
        assert "cleanup" in label(screen, "cleanup")
        assert "Colours and brackets" in header(screen)
        assert "succeeded" in header(screen) and "run #" in header(screen)
        assert "operator alice" in header(screen)

        view = screen.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count >= 6, what="log lines")
        shown = view.plain_lines()
        for expected in (
            "ok=12 failed=1",
            "title",
            "clip",
            "clear",
            "[ERROR] [/etc/nginx/nginx.conf] failed",
        ):
            assert expected in shown
        assert not any("ZWNo" in line or "owned-title" in line for line in shown)
        for entry in view.entries:
            assert "\x07" not in entry.text
            assert "\x1b]" not in entry.text and "\x1b[2J" not in entry.text
        assert "going down" not in shown

        # The header repeats the selected failed step's reason, whole.
        await pilot.press("down")
        await wait_for(pilot, lambda: "✘ failed soft-fail: exit 3" in header(screen))

        # The log follows the step under the cursor; `l` shows every step.
        await pilot.press("up", "l")
        await wait_for(pilot, lambda: "going down" in view.plain_lines())
        assert view.show_source

    await drive(services, scenario)


async def test_log_search_finds_and_escape_closes_it(
    services: Services, tmp_path: Path
) -> None:
    add_runbook(services, tmp_path, COLOURS)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "colours")
        await wait_for(pilot, finished(screen))
        await pilot.press("home")
        view = screen.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count >= 6)
        await pilot.press("slash", *"nginx", "enter")
        assert view.match_index is not None
        assert "nginx" in view.plain_lines()[view.match_index]
        assert not view.follow
        await pilot.press("escape")
        assert not screen.query_one("#log-search").display
        assert current(app) is screen
        await pilot.press("f")
        assert view.follow

    await drive(services, scenario)


async def test_cancel_asks_first_and_escape_never_cancels(
    services: Services, tmp_path: Path
) -> None:
    add_runbook(services, tmp_path, SLOW)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "slow")
        await wait_for(
            pilot, lambda: "running" in label(screen, "nap"), what="nap running"
        )
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert current(app) is screen
        assert screen.execution is not None
        assert not screen.execution.status.finished

        await pilot.press("c")
        await pilot.press("y")
        await wait_for(pilot, finished(screen), what="cancelled")
        assert screen.execution is not None
        assert screen.execution.status == "cancelled"
        await wait_for(pilot, lambda: "cancelled" in header(screen))
        assert not screen.check_action("cancel_run", ())

    await drive(services, scenario)


async def test_resume_retries_from_the_selected_step(
    services: Services, tmp_path: Path
) -> None:
    add_runbook(services, tmp_path, RETRY)
    marker = tmp_path / "marker"

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "retry-me", marker=str(marker))
        await wait_for(pilot, finished(screen))
        assert screen.execution is not None
        assert screen.execution.status == "failed"
        assert screen.check_action("resume_run", ())

        marker.write_text("ok")
        tree = screen.query_one(StepTree)
        node = tree.node_for("check")
        assert node is not None
        tree.move_cursor(node)
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: (
                screen.execution is not None and screen.execution.status == "succeeded"
            ),
            what="resumed run succeeds",
        )
        await wait_for(pilot, lambda: label(screen, "check").startswith("✔ passed"))
        assert label(screen, "first").startswith("✔ passed")

    await drive(services, scenario)


async def test_approve_from_the_run_screen(services: Services, tmp_path: Path) -> None:
    add_runbook(services, tmp_path, APPROVE)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "gated")
        await wait_for(pilot, lambda: "waiting" in label(screen, "ask"))
        await wait_for(pilot, lambda: "Restart [/var] now?" in header(screen))
        assert screen.check_action("approve", ())
        await pilot.press("y")
        assert isinstance(app.screen, CommentScreen)
        await pilot.press(*"go ahead", "enter")
        await wait_for(pilot, finished(screen), what="approved run ends")
        assert screen.execution is not None
        assert screen.execution.status == "succeeded"
        approval = services.store.get_approval(screen.execution_id, "ask")
        assert approval is not None and approval.status == "approved"
        assert approval.comment == "go ahead"

    await drive(services, scenario)


async def test_reject_needs_a_comment(services: Services, tmp_path: Path) -> None:
    add_runbook(services, tmp_path, APPROVE)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "gated")
        await wait_for(pilot, lambda: "waiting" in label(screen, "ask"))
        await pilot.press("n")
        dialog = app.screen
        assert isinstance(dialog, CommentScreen)
        await pilot.press("enter")
        assert current(app) is dialog
        await pilot.press(*"not now", "enter")
        await wait_for(pilot, finished(screen), what="rejected run ends")
        assert screen.execution is not None
        assert screen.execution.status == "failed"
        await wait_for(pilot, lambda: label(screen, "ask").startswith("✘ failed"))

    await drive(services, scenario)


async def test_an_approval_not_yours_is_not_offered_and_nothing_changes(
    services: Services, tmp_path: Path
) -> None:
    add_runbook(services, tmp_path, LEAD_ONLY)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "lead-gated")
        await wait_for(pilot, lambda: "waiting" in label(screen, "ask"))
        # alice is no lead: y is dim, and pressing it says who may decide.
        assert screen.check_action("approve", ()) is None
        await pilot.press("y")
        assert current(app) is screen
        await wait_for(
            pilot,
            lambda: any(
                n.title == "Not yours to decide" and "role:lead" in n.message
                for n in app._notifications
            ),
            what="refusal toast",
        )
        approval = services.store.get_approval(screen.execution_id, "ask")
        assert approval is not None and approval.status == "waiting"
        await app.services.engine.cancel(screen.execution_id, actor="alice")

    await drive(services, scenario)


async def test_child_run_nests_and_enter_opens_it(
    services: Services, tmp_path: Path
) -> None:
    add_runbook(services, tmp_path, CHILD)
    add_runbook(services, tmp_path, PARENT)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "parent")
        await wait_for(pilot, finished(screen))
        children = services.store.child_executions(screen.execution_id)
        assert len(children) == 1
        tree = screen.query_one(StepTree)
        await wait_for(pilot, lambda: tree.child_node(children[0].id) is not None)
        node = tree.child_node(children[0].id)
        assert node is not None and "succeeded" in str(node.label)
        tree.move_cursor(node)
        await pilot.press("enter")
        await pilot.pause()
        child_screen = run_screen(app)
        assert child_screen.execution_id == children[0].id
        await wait_for(pilot, lambda: child_screen.execution is not None)
        assert f"child of run #{screen.execution_id}" in header(child_screen)
        await pilot.press("escape")
        assert current(app) is screen

    await drive(services, scenario)


BIG = """
name: big-output
steps:
  - id: flood
    action: shell
    with:
      command: |
        seq 1 12000
        head -c 30000 /dev/zero | tr '\\0' 'a'; echo
        echo last
"""


async def test_large_output_is_bounded_with_a_truncation_banner(
    services: Services, tmp_path: Path
) -> None:
    """C04: the view keeps a tail, says the output was truncated, cuts long lines;
    a finished run's history loads from the store a page at a time."""
    add_runbook(services, tmp_path, BIG)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "big-output")
        await wait_for(pilot, finished(screen), what="flood ends")
        banner = screen.query_one("#log-banner", Static)
        await wait_for(pilot, lambda: bool(banner.display), what="banner")
        view = screen.query_one(LogView)
        assert view.line_count == MAX_LINES
        shown = str(banner.render())
        assert shown.startswith("output truncated: 90.9 KB, showing last 5,000 lines")
        assert "full output:" in shown
        assert view.plain_lines()[-1] == "last"
        long_line = view.entries[-2]
        assert long_line.cut == 30000 - MAX_LINE_CHARS
        await pilot.press("f")
        assert not view.follow

        # The same run opened afresh: history read from the store, page by page.
        await app.push_screen(RunScreen(screen.execution_id))
        again = run_screen(app)
        again_view = again.query_one(LogView)
        await wait_for(pilot, lambda: again_view.plain_lines()[-1:] == ["last"])
        assert again_view.line_count == MAX_LINES
        again_banner = again.query_one("#log-banner", Static)
        await wait_for(pilot, lambda: bool(again_banner.display))

    await drive(services, scenario)


async def test_fan_out_hosts_appear_under_their_step(
    services: Services, tmp_path: Path
) -> None:
    """Per-host events (``host != ""``) add children under the step, and the log
    pane of a host child shows only that host's lines."""
    add_runbook(services, tmp_path, SLOW)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "slow")
        await wait_for(pilot, lambda: "running" in label(screen, "nap"))
        at = services.clock()
        for host, status in (("web-01", "passed"), ("web-02", "failed")):
            screen.on_engine_event(
                StepChanged(
                    screen.execution_id,
                    "nap",
                    host,
                    status,
                    reason="exit 1" if status == "failed" else None,
                    started_at=at,
                    finished_at=at,
                )
            )
        lines = [
            LogLine(screen.execution_id, "nap", host, "stdout", 10_000 + i, at, text)
            for i, (host, text) in enumerate(
                [("web-01", "one says hi"), ("web-02", "two says [/b]")]
            )
        ]
        screen.on_engine_event(LogBatch(screen.execution_id, lines))
        await pilot.pause()
        assert label(screen, "nap", "web-01").startswith("✔ passed")
        assert label(screen, "nap", "web-02").startswith("✘ failed")
        assert "exit 1" in label(screen, "nap", "web-02")

        tree = screen.query_one(StepTree)
        node = tree.node_for("nap", "web-02")
        assert node is not None
        tree.follow = False  # as when the operator moves the cursor
        tree.move_cursor(node)
        view = screen.query_one(LogView)
        await wait_for(
            pilot,
            lambda: (
                screen.log_pane.scope is not None
                and screen.log_pane.scope.host == "web-02"
            ),
        )
        await wait_for(pilot, lambda: not screen.log_pane.loading)
        assert "one says hi" not in view.plain_lines()
        await app.services.engine.cancel(screen.execution_id, actor="alice")

    await drive(services, scenario)


async def test_unknown_run_is_reported(services: Services) -> None:
    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        await app.push_screen(RunScreen(999))
        await wait_for(
            pilot,
            lambda: any("#999 does not exist" in n.message for n in app._notifications),
        )
        screen = run_screen(app)
        assert screen.execution is None
        assert not screen.check_action("cancel_run", ())
        await pilot.press("escape")
        assert not isinstance(app.screen, RunScreen)

    await drive(services, scenario)


async def test_resizing_during_a_live_run_reflows_and_recovers(
    services: Services, tmp_path: Path
) -> None:
    """C10: resizes, down to "too small" and back, never disturb the run or the
    screen; Esc on the cancel dialog never cancels."""
    add_runbook(services, tmp_path, SLOW)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "slow")
        await wait_for(pilot, lambda: "running" in label(screen, "nap"))
        for size in ((200, 60), (20, 6), (120, 40)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
        await wait_for(pilot, lambda: current(app) is screen, what="recovered")
        tree = screen.query_one(StepTree)
        assert tree.outer_size.width == int(120 * 0.45)
        await pilot.press("c", "escape")
        await pilot.pause()
        assert screen.execution is not None
        assert screen.execution.status == "running"
        await app.services.engine.cancel(screen.execution_id, actor="alice")
        await wait_for(pilot, finished(screen))

    await drive(services, scenario)


LEAKY = """
name: leaky
params:
  db_password: {type: secret, required: true}
steps:
  - id: leak
    action: shell
    with:
      env: {DB_PASSWORD: "{{ params.db_password }}"}
      command: 'echo "pw=$DB_PASSWORD"; exit 2'
"""


async def test_secrets_never_reach_the_screen(
    services: Services, tmp_path: Path
) -> None:
    """C27: the secret is masked in the log, the tree and the header."""
    add_runbook(services, tmp_path, LEAKY)
    secret = "S3cr3t!pw"

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "leaky", db_password=secret)
        await wait_for(pilot, finished(screen))
        view = screen.query_one(LogView)
        await wait_for(pilot, lambda: "pw=******" in view.plain_lines())
        await pilot.press("l")
        await wait_for(pilot, lambda: not screen.log_pane.loading)
        picture = app.export_screenshot()
        assert "pw=******" in picture.replace("&#160;", " ")
        assert secret not in picture and "S3cr3t" not in picture
        assert not any(secret in line for line in view.plain_lines())

    await drive(services, scenario)


# ---------------------------------------------------------------------- snapshots

SnapCompare = Callable[..., bool]

SNAP = r"""
name: snap
title: Restart [web] tier
steps:
  - id: colours
    name: Print colours
    action: shell
    with:
      command: |
        printf '\033[0;32mok=12\033[0m \033[1;31mfailed=1\033[0m\n'
        printf '\033]0;owned-title\007title\n'
        echo '[ERROR] [/etc/nginx/nginx.conf] failed'
  - id: soft-fail
    action: shell
    with: {command: "exit 3"}
    on_failure: continue
  - id: nap
    action: wait
    with: {duration: 60s}
  - id: after
    action: shell
    with: {command: "echo after"}
  - id: cleanup
    action: shell
    only_on_failure: true
    with: {command: "echo cleaning"}
"""


async def settle(pilot: Pilot[Any]) -> None:
    await wait_for(pilot, lambda: True)
    for search in pilot.app.screen.query(Input):
        search.cursor_blink = False
    await pilot.pause()


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
def test_snapshot_live_run(
    snap_compare: SnapCompare, services: Services, tmp_path: Path, size: Any
) -> None:
    """A run in progress: header "Restart [web] tier v1 · run #1 ⠋ running",
    "operator alice · trigger manual · elapsed 0ms"; the tree shows Print colours
    "✔ passed", soft-fail "✘ failed … exit 3 — exit 3", nap "⠋ running" (spinner
    frozen at its first frame), after "○ pending" and cleanup dim with
    "(on failure)"; the log pane, titled "Output: colours · following", shows
    "ok=12" in green and "failed=1" in bold red, then "title" (no window-title
    text) and "[ERROR] [/etc/nginx/nginx.conf] failed" literally."""
    add_runbook(services, tmp_path, SNAP)

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, HalotermApp)
        app.animation_level = "none"
        screen = await open_run(pilot, app, "snap")
        await wait_for(pilot, lambda: "running" in label(screen, "nap"))
        # The cursor followed the run to nap; the picture is of the first step.
        await pilot.press("home")
        view = screen.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count >= 3, what="log")
        await settle(pilot)

    app = create_app(services)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_snapshot_waiting_approval(
    snap_compare: SnapCompare, services: Services, tmp_path: Path
) -> None:
    """A run waiting on approval, cursor on the waiting step: the tree shows
    ask "⏸ waiting" and done "○ pending"; the header adds "⏸ waiting approval for
    ask: Restart [/var] now? (approvers: alice)  y approve · n reject", brackets
    shown literally; the footer offers Approve and Reject."""
    add_runbook(services, tmp_path, APPROVE)

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, HalotermApp)
        app.animation_level = "none"
        screen = await open_run(pilot, app, "gated")
        await wait_for(pilot, lambda: "waiting" in label(screen, "ask"))
        await wait_for(pilot, lambda: "Restart [/var]" in header(screen))
        await settle(pilot)

    assert snap_compare(
        create_app(services), terminal_size=(100, 30), run_before=run_before
    )


FOLLOW = """
name: follow-me
steps:
  - id: first
    action: shell
    with: {command: "echo first"}
  - id: second
    action: shell
    with: {command: "echo second"}
  - id: ask
    action: approval
    with: {approvers: ["alice"], message: "Go?", allow_self_approval: true}
"""


async def test_the_cursor_follows_the_live_step_until_moved(
    services: Services, tmp_path: Path
) -> None:
    add_runbook(services, tmp_path, FOLLOW)

    async def scenario(pilot: Pilot[None], app: HalotermApp) -> None:
        screen = await open_run(pilot, app, "follow-me")
        tree = screen.query_one(StepTree)
        await wait_for(pilot, lambda: "waiting" in label(screen, "ask"))
        await wait_for(pilot, lambda: screen.log_pane.scope is not None)
        selected = tree.selected
        assert selected is not None and selected.step_id == "ask"
        # The waiting step is under the cursor: y decides it at once.
        assert screen.check_action("approve", ()) is True
        await pilot.press("up")
        assert not tree.follow
        selected = tree.selected
        assert selected is not None and selected.step_id == "second"
        await app.services.engine.cancel(screen.execution_id, actor="alice")

    await drive(services, scenario)
