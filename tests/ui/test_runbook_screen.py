"""The runbook screen: definition, versions and diffs, run, and the editor flow."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static, TabbedContent

from haloterm.app import create_app
from haloterm.plugins.shell import ShellInputs
from haloterm.screens.runbook import (
    RunbookScreen,
    draft_path,
    render_definition,
    render_diff,
)
from haloterm.screens.step_editor import (
    AddStepScreen,
    StepEditorScreen,
    StepInputsScreen,
    default_text,
    parse_value,
    show_value,
)
from haloterm.services import Services
from tests.ui.conftest import wait_for

SIZE = (100, 30)

BOOK = """\
name: tidy-logs
title: Tidy the logs
params:
  days: {type: integer, default: 7, min: 1}
  target: {type: choice, choices: [web, db], default: web}
triggers:
  - manual: true
steps:
  - id: prune
    name: Prune old files
    action: shell
    with: {command: "find /var/log/app -mtime +{{ params.days }} -delete"}
    timeout: 30s
  - id: report
    action: shell
    with: {command: "echo done [/var]"}
"""


def add_book(services: Services, tmp_path: Path, text: str) -> None:
    path = tmp_path / "books" / "book.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    services.import_runbook(path)


def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Point $EDITOR at a script that edits the file it is given (in ``$1``)."""
    script = tmp_path / "edit.sh"
    script.write_text("#!/bin/sh\nset -e\n" + body + "\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(script))


def text_of(screen: RunbookScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def open_book(pilot: Pilot[Any], app: Any, name: str) -> RunbookScreen:
    await pilot.pause()
    await app.push_screen(RunbookScreen(name))
    screen = app.screen
    assert isinstance(screen, RunbookScreen)
    await wait_for(pilot, lambda: bool(screen.versions), what="versions")
    return screen


async def test_definition_shows_params_triggers_and_steps(
    services: Services, tmp_path: Path
) -> None:
    add_book(services, tmp_path, BOOK)
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_book(pilot, app, "tidy-logs")
        shown = text_of(screen, "#definition")
        assert "Tidy the logs" in shown and "tidy-logs v1" in shown
        assert "days" in shown and "integer" in shown and "default 7" in shown
        assert "one of web, db" in shown
        assert "manual" in shown
        assert "1. prune  Prune old files  [shell]" in shown
        assert "command: find /var/log/app -mtime +{{ params.days }}" in shown
        assert "timeout 30s" in shown
        assert "echo done [/var]" in shown
        assert not screen.check_action("diff_versions", ())


async def test_definition_names_failure_branches_as_the_file_does(
    services: Services,
) -> None:
    stored = services.store.get_runbook("restart-demo-service")
    assert stored is not None
    shown = render_definition(stored).plain
    assert "on failure goto rollback" in shown
    assert "on failure continue" in shown
    assert "{'goto'" not in shown and "only on failure" in shown


async def test_versions_and_diff(services: Services, tmp_path: Path) -> None:
    add_book(services, tmp_path, BOOK)
    second = BOOK.replace("Tidy the logs", "Tidy logs")
    add_book(services, tmp_path, second)
    add_book(services, tmp_path, second.replace("default: 7,", "default: 14,"))
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_book(pilot, app, "tidy-logs")
        assert [v.version for v in screen.versions] == [3, 2, 1]
        screen.query_one(TabbedContent).active = "versions-tab"
        table = screen.query_one("#versions", DataTable)
        table.focus()
        await pilot.pause()

        # v3 (the cursor) against the one before it.
        await pilot.press("d")
        diff = text_of(screen, "#diff")
        assert "--- tidy-logs v2" in diff and "+++ tidy-logs v3" in diff
        assert "-  days: {type: integer, default: 7, min: 1}" in diff
        assert "+  days: {type: integer, default: 14, min: 1}" in diff

        # Mark v1, then diff v3 against it.
        await pilot.press("down", "down", "space", "up", "up", "d")
        diff = text_of(screen, "#diff")
        assert "--- tidy-logs v1" in diff and "+++ tidy-logs v3" in diff
        assert "-title: Tidy the logs" in diff and "+title: Tidy logs" in diff


def test_render_diff_of_identical_versions(services: Services) -> None:
    (stored,) = services.store.runbook_versions("store-maintenance")
    assert "the same source" in render_diff(stored, stored).plain


async def test_r_opens_the_run_form(services: Services, tmp_path: Path) -> None:
    from haloterm.screens.run_form import RunForm

    add_book(services, tmp_path, BOOK)
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_book(pilot, app, "tidy-logs")
        assert screen.check_action("run_runbook", ())
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RunForm)


async def test_edit_saves_a_valid_draft_as_a_new_version(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_book(services, tmp_path, BOOK)
    editor(tmp_path, monkeypatch, "sed -i 's/^title: .*/title: Edited title/' \"$1\"")
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_book(pilot, app, "tidy-logs")
        await pilot.press("e")
        await wait_for(pilot, lambda: len(screen.versions) == 2, what="v2")
        latest = services.store.get_runbook("tidy-logs")
        assert latest is not None and latest.version == 2
        assert latest.runbook.title == "Edited title"
        assert latest.author == "alice"
        assert not draft_path("tidy-logs").exists()
        assert "Edited title" in text_of(screen, "#definition")


async def test_invalid_draft_is_kept_and_nothing_stored(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_book(services, tmp_path, BOOK)
    editor(tmp_path, monkeypatch, "echo 'retries: 3' >> \"$1\"")
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_book(pilot, app, "tidy-logs")
        await pilot.press("e")
        problems = screen.query_one("#edit-problems", Static)
        await wait_for(pilot, lambda: bool(problems.display), what="problems")
        shown = text_of(screen, "#edit-problems")
        assert "nothing was stored" in shown
        assert "tidy-logs.yaml:17:1" in shown and "retries" in shown
        assert [v.version for v in services.store.runbook_versions("tidy-logs")] == [1]
        draft = draft_path("tidy-logs")
        assert draft.exists() and "retries: 3" in draft.read_text()

        # The next edit starts from the kept draft; fixed, it is saved.
        editor(tmp_path, monkeypatch, "sed -i '/^retries: 3$/d' \"$1\"")
        await pilot.press("e")
        await wait_for(pilot, lambda: not problems.display, what="fixed")
        # Same content as v1: nothing new stored, and the draft is gone.
        assert [v.version for v in services.store.runbook_versions("tidy-logs")] == [1]
        assert not draft.exists()


async def test_renaming_in_the_draft_is_refused(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_book(services, tmp_path, BOOK)
    editor(tmp_path, monkeypatch, "sed -i 's/^name: .*/name: other-name/' \"$1\"")
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_book(pilot, app, "tidy-logs")
        await pilot.press("e")
        problems = screen.query_one("#edit-problems", Static)
        await wait_for(pilot, lambda: bool(problems.display), what="problems")
        assert "'other-name'" in text_of(screen, "#edit-problems")
        assert services.store.get_runbook("other-name") is None
        assert draft_path("tidy-logs").exists()


async def test_failed_editor_keeps_the_draft(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_book(services, tmp_path, BOOK)
    editor(tmp_path, monkeypatch, "exit 4")
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        await open_book(pilot, app, "tidy-logs")
        await pilot.press("e")
        await pilot.pause()
        assert any("status 4" in n.message for n in app._notifications)
        assert draft_path("tidy-logs").exists()
        assert len(services.store.runbook_versions("tidy-logs")) == 1


async def open_steps(pilot: Pilot[Any], app: Any) -> StepEditorScreen:
    screen = await open_book(pilot, app, "tidy-logs")
    await pilot.press("t")
    await pilot.pause()
    editor_screen = app.screen
    assert isinstance(editor_screen, StepEditorScreen)
    assert editor_screen.stored.version == screen.versions[0].version
    return editor_screen


def step_ids(services: Services) -> list[str]:
    latest = services.store.get_runbook("tidy-logs")
    assert latest is not None
    return [step.id for step in latest.runbook.steps]


async def test_step_editor_adds_a_step_with_inputs(
    services: Services, tmp_path: Path
) -> None:
    add_book(services, tmp_path, "# kept comment\n" + BOOK)
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        editor_screen = await open_steps(pilot, app)
        await pilot.press("a")
        adding = app.screen
        assert isinstance(adding, AddStepScreen)
        adding.query_one("#step-action", Select).value = "wait"
        adding.query_one("#step-id", Input).value = "pause"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is editor_screen
        assert [str(s["id"]) for s in editor_screen.steps] == [
            "prune",
            "pause",
            "report",
        ]

        await pilot.press("enter")
        inputs = app.screen
        assert isinstance(inputs, StepInputsScreen)
        inputs.query_one("#field-duration", Input).value = "5s"
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("s")
        await wait_for(
            pilot, lambda: len(services.store.runbook_versions("tidy-logs")) == 2
        )
        latest = services.store.get_runbook("tidy-logs")
        assert latest is not None
        assert step_ids(services) == ["prune", "pause", "report"]
        assert latest.runbook.step("pause").with_ == {"duration": "5s"}
        assert latest.source_text.startswith("# kept comment")
        assert not draft_path("tidy-logs").exists()


async def test_step_editor_reorders_and_refuses_an_invalid_result(
    services: Services, tmp_path: Path
) -> None:
    book = BOOK.replace(
        "    timeout: 30s\n", "    timeout: 30s\n    on_failure: {goto: report}\n"
    )
    add_book(services, tmp_path, book)
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        editor_screen = await open_steps(pilot, app)
        # Removing the goto target leaves a dangling goto: refused, nothing stored.
        await pilot.press("down", "x")
        await pilot.press("s")
        problems = editor_screen.query_one("#editor-problems", Static)
        await wait_for(pilot, lambda: bool(problems.display), what="problems")
        shown = str(problems.render())
        assert "nothing was stored" in shown and "report" in shown
        assert len(services.store.runbook_versions("tidy-logs")) == 1

        await pilot.press("escape")
        editor_screen = await open_steps(pilot, app)
        await pilot.press("J")
        assert [str(s["id"]) for s in editor_screen.steps] == ["report", "prune"]
        await pilot.press("s")
        await wait_for(
            pilot, lambda: len(services.store.runbook_versions("tidy-logs")) == 2
        )
        assert step_ids(services) == ["report", "prune"]


async def test_step_editor_stores_nothing_when_the_definition_is_the_same(
    services: Services, tmp_path: Path
) -> None:
    add_book(services, tmp_path, BOOK)
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        await open_steps(pilot, app)
        await pilot.press("s")  # nothing touched
        await wait_for(
            pilot,
            lambda: any("Nothing changed" in n.message for n in app._notifications),
        )
        # Inputs opened and saved as they were: the same definition, no version.
        await open_steps(pilot, app)
        await pilot.press("enter")
        assert isinstance(app.screen, StepInputsScreen)
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("s")
        await wait_for(
            pilot,
            lambda: any("define what v1 does" in n.message for n in app._notifications),
        )
        assert len(services.store.runbook_versions("tidy-logs")) == 1
        assert not draft_path("tidy-logs").exists()


def test_parse_value_keeps_text_fields_as_text() -> None:
    fields = ShellInputs.model_fields
    assert parse_value("NO", fields["command"]) == "NO"
    assert parse_value("[0, 3]", fields["success_codes"]) == [0, 3]
    assert show_value([0, 3]) == "[0, 3]" and show_value(None) == ""
    assert default_text(fields["command"]) == "required"
    assert default_text(fields["shell"]) == "default /bin/bash"
    assert default_text(fields["success_codes"]) == "default [0]"
    assert default_text(fields["env"]) == ""


# ---------------------------------------------------------------------- snapshots

SnapCompare = Callable[..., bool]


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
def test_snapshot_definition(
    snap_compare: SnapCompare, services: Services, tmp_path: Path, size: Any
) -> None:
    """Runbook screen, Definition tab: title "Tidy the logs  tidy-logs · 1 version";
    Params "days integer default 7" and "target choice default web one of web, db";
    Triggers "manual"; Steps "1. prune  Prune old files  [shell]" with its command
    and "timeout 30s", and "2. report  [shell]" with "echo done [/var]" literally.
    The footer shows Run, Edit and Steps (no Diff: there is one version)."""
    add_book(services, tmp_path, BOOK)

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.animation_level = "none"
        await open_book(pilot, pilot.app, "tidy-logs")
        await wait_for(pilot, lambda: True)

    assert snap_compare(create_app(services), terminal_size=size, run_before=run_before)


def test_snapshot_versions_diff(
    snap_compare: SnapCompare, services: Services, tmp_path: Path
) -> None:
    """Runbook screen, Versions tab: v2 and v1 by alice, saved 2025-06-03 15:00, with
    hashes; below, the diff "--- tidy-logs v1" / "+++ tidy-logs v2", a cyan "@@" hunk
    header, "-title: Tidy the logs" in red and "+title: Tidy logs" in green."""
    add_book(services, tmp_path, BOOK)
    add_book(services, tmp_path, BOOK.replace("Tidy the logs", "Tidy logs"))

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.animation_level = "none"
        screen = await open_book(pilot, pilot.app, "tidy-logs")
        screen.query_one(TabbedContent).active = "versions-tab"
        screen.query_one("#versions", DataTable).focus()
        await pilot.press("d")
        await wait_for(pilot, lambda: True)

    assert snap_compare(
        create_app(services), terminal_size=(100, 30), run_before=run_before
    )


def test_snapshot_step_editor(
    snap_compare: SnapCompare, services: Services, tmp_path: Path
) -> None:
    """Step editor over tidy-logs: title "Steps of tidy-logs  editing v1"; rows
    "1 prune shell command" and "2 report shell command"; the inputs dialog of prune
    lists the shell inputs (command, required, holding its text; then shell with the
    placeholder "default /bin/bash", env, cwd, stdin... optional) and a "Done
    (ctrl+s)" button."""
    add_book(services, tmp_path, BOOK)

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.animation_level = "none"
        await open_steps(pilot, pilot.app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: True)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        await pilot.pause()

    assert snap_compare(
        create_app(services), terminal_size=(100, 30), run_before=run_before
    )
