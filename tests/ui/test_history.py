"""The history screen: filters, paging, opening a run, the audit tab and exports."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, TabbedContent

from haloterm.app import create_app
from haloterm.config import data_dir
from haloterm.models import Execution
from haloterm.screens.export import ExportScreen, free_path
from haloterm.screens.history import (
    FilterError,
    HistoryScreen,
    parse_run_filter,
)
from haloterm.screens.run import RunScreen
from haloterm.services import Services
from haloterm.storage import Store
from tests.ui.conftest import FROZEN, wait_for

SIZE = (100, 30)


def add_execution(
    store: Store,
    runbook: str,
    *,
    status: str = "succeeded",
    ticket_id: int | None = None,
    reason: str | None = None,
) -> Execution:
    execution = store.create_execution(
        runbook=runbook,
        version=1,
        params={},
        secret_params=[],
        trigger="manual",
        operator="alice",
        ticket_id=ticket_id,
        step_ids=["only"],
    )
    return store.update_execution(
        execution.id,
        status=status,
        reason=reason,
        started_at=FROZEN,
        finished_at=FROZEN,
    )


def runs_table(screen: HistoryScreen) -> DataTable[object]:
    return screen.query_one("#runs", DataTable)


def shown_ids(screen: HistoryScreen) -> list[int]:
    return [int(str(key.value)) for key in runs_table(screen).rows]


async def open_history(pilot: Pilot[Any], app: Any) -> HistoryScreen:
    await pilot.pause()
    await pilot.press("h")
    screen = app.screen
    assert isinstance(screen, HistoryScreen)
    await wait_for(pilot, lambda: screen.query_one("#runs-status").render() != "")
    return screen


def test_parse_run_filter() -> None:
    parsed = parse_run_filter("runbook:web status:failed,cancelled ticket:#7")
    assert parsed.runbook == "web" and parsed.ticket_id == 7
    assert parsed.status == ("failed", "cancelled")
    day = parse_run_filter("since:2025-06-03 until:2025-06-03")
    assert day.since is not None and day.until is not None
    assert (day.until - day.since).days == 1
    for bad in ("colour:red", "ticket:x", "since:yesterday", "runbook"):
        with pytest.raises(FilterError):
            parse_run_filter(bad)


async def test_filters_narrow_the_runs(services: Services) -> None:
    store = services.store
    ticket = store.create_ticket(title="Disk full on [/var] again", actor="alice")
    web = add_execution(store, "web", status="failed", ticket_id=ticket)
    db = add_execution(store, "db")
    web2 = add_execution(store, "web")

    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(pilot, app)
        assert shown_ids(screen)[:3] == [web2.id, db.id, web.id]

        async def apply(text: str) -> list[int]:
            box = screen.query_one("#run-filter", Input)
            box.value = text
            await box.action_submit()
            await wait_for(pilot, lambda: screen.run_filter == parse_run_filter(text))
            await app.workers.wait_for_complete()
            await pilot.pause()
            return shown_ids(screen)

        assert await apply("runbook:web") == [web2.id, web.id]
        assert await apply("status:failed") == [web.id]
        assert await apply(f"ticket:{ticket}") == [web.id]
        assert await apply("runbook:web status:succeeded") == [web2.id]
        assert await apply("since:2025-06-04") == []
        until_today = await apply("until:2025-06-03")
        assert {web.id, db.id, web2.id} <= set(until_today)

        # A bad term is reported and leaves the current filter alone.
        await apply("runbook:db")
        box = screen.query_one("#run-filter", Input)
        box.focus()
        await pilot.press("ctrl+a", "ctrl+k", *"colour:", "enter")
        await pilot.pause()
        assert any("colour" in n.message for n in app._notifications)
        assert screen.run_filter.runbook == "db"


async def test_pages_load_as_the_cursor_reaches_the_end(services: Services) -> None:
    for _ in range(130):
        add_execution(services.store, "bulk")
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(pilot, app)
        table = runs_table(screen)
        await wait_for(pilot, lambda: table.row_count == 100)
        assert screen.more_runs
        table.focus()
        await pilot.press("ctrl+end")
        await wait_for(pilot, lambda: table.row_count >= 130, what="second page")
        ids = shown_ids(screen)
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)


async def test_enter_opens_the_run(services: Services) -> None:
    execution = add_execution(services.store, "web")
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(pilot, app)
        table = runs_table(screen)
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        run = app.screen
        assert isinstance(run, RunScreen)
        assert run.execution_id == execution.id
        await pilot.press("escape")
        assert app.screen is screen


async def test_export_runs_to_csv_and_json(services: Services) -> None:
    store = services.store
    add_execution(store, "web", status="failed", reason="\x1b[31mexit 3\x1b[0m [/var]")
    add_execution(store, "db")
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        await open_history(pilot, app)
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        await pilot.press("c")
        await app.workers.wait_for_complete()
        await pilot.press("e", "j")
        await app.workers.wait_for_complete()
        await pilot.pause()

    exports = sorted((data_dir() / "exports").iterdir())
    by_suffix = {path.suffix: path for path in exports}
    assert set(by_suffix) == {".csv", ".json"}

    with by_suffix[".csv"].open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["runbook"] for row in rows] == ["db", "web"]
    assert rows[1]["status"] == "failed"
    assert rows[1]["reason"] == "exit 3 [/var]"

    records = json.loads(by_suffix[".json"].read_text(encoding="utf-8"))
    assert [r["runbook"] for r in records] == ["db", "web"]
    assert records[1]["reason"] == "exit 3 [/var]"
    assert "\x1b" not in by_suffix[".json"].read_text(encoding="utf-8")


async def test_audit_tab_lists_and_exports(services: Services) -> None:
    store = services.store
    store.audit(
        actor="alice",
        action="note.add",
        target_type="ticket",
        target_id="9",
        detail={"text": "\x1b[1mbold\x1b[0m [link=x]y[/link]"},
    )
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(pilot, app)
        await pilot.press("t")  # from the runs to the audit trail
        assert screen.query_one(TabbedContent).active == "audit-tab"
        audit = screen.query_one("#audit", DataTable)
        await wait_for(pilot, lambda: audit.row_count > 0)
        assert screen.audit[0].action == "note.add"
        await pilot.pause()
        assert app.focused is audit
        await pilot.press("e", "c")
        await app.workers.wait_for_complete()
        await pilot.pause()
        stored = len(store.list_audit(limit=10_000))

    (path,) = (data_dir() / "exports").iterdir()
    assert path.name.startswith("audit-") and path.suffix == ".csv"
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["action"] == "note.add"
    assert json.loads(rows[0]["detail"]) == {"text": "bold [link=x]y[/link]"}
    assert len(rows) == stored


def test_exports_never_overwrite(tmp_path: Path) -> None:
    first = tmp_path / "runs.csv"
    first.write_text("x")
    assert free_path(first).name == "runs-2.csv"


async def test_live_runs_appear_and_change_in_place(
    services: Services, tmp_path: Path
) -> None:
    book = tmp_path / "quick.yaml"
    book.write_text(
        "name: quick\nsteps:\n  - id: hi\n    action: shell\n"
        "    with: {command: 'echo hi'}\n",
        encoding="utf-8",
    )
    services.import_runbook(book)
    old = add_execution(services.store, "web", status="running")
    app = create_app(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(pilot, app)
        table = runs_table(screen)

        def status_of(execution_id: int) -> str:
            return str(table.get_cell(str(execution_id), "status"))

        assert status_of(old.id) == "⠋ running"
        execution_id = await services.engine.start("quick", {}, operator="alice")
        await wait_for(pilot, lambda: str(execution_id) in table.rows, what="new row")
        await services.engine.wait(execution_id)
        await wait_for(pilot, lambda: status_of(execution_id) == "✔ succeeded")

        await services.engine.cancel(old.id, actor="alice")
        await wait_for(pilot, lambda: status_of(old.id) == "■ cancelled")
        assert "cancelled by alice" in str(table.get_cell(str(old.id), "reason"))


# ---------------------------------------------------------------------- snapshots

SnapCompare = Callable[..., bool]


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
def test_snapshot_history(
    snap_compare: SnapCompare, services: Services, size: tuple[int, int]
) -> None:
    """History, Runs tab, filling the screen: the filter line's placeholder, then
    runs #4 to #1 newest first: "✘ failed" with the reason "[ERROR]
    [/etc/nginx/nginx.conf] failed" shown literally (no colour codes), "■ cancelled"
    ("cancelled by bob"), "⚠ interrupted" and "✔ succeeded" (ticket #7, after the six
    demo tickets); each started 06-03 15:00 and took 0ms; "4 runs shown" at the
    bottom; the footer shows Filter, Export and Reload."""
    store = services.store
    ticket = store.create_ticket(title="Web down", actor="alice")
    add_execution(store, "restart-web", ticket_id=ticket)
    add_execution(store, "rotate-logs", status="interrupted")
    add_execution(store, "restart-web", status="cancelled", reason="cancelled by bob")
    add_execution(
        store,
        "restart-web",
        status="failed",
        reason="\x1b[31m[ERROR] [/etc/nginx/nginx.conf] failed\x1b[0m",
    )

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.animation_level = "none"
        screen = await open_history(pilot, pilot.app)
        await wait_for(pilot, lambda: len(screen.runs) == 4)
        screen.query_one("#run-filter", Input).cursor_blink = False
        await pilot.pause()

    assert snap_compare(create_app(services), terminal_size=size, run_before=run_before)
