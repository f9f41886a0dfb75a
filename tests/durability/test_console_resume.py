"""The console resumes an interrupted run with ``R`` on the run screen."""

from __future__ import annotations

from pathlib import Path

from haloterm.app import create_app
from haloterm.models import ExecutionStatus
from haloterm.screens.run import RunScreen
from haloterm.services import Services
from haloterm.widgets.step_tree import StepTree
from tests.engine.conftest import make_settings

TWO = """
name: two
steps:
  - {id: first, action: shell, with: {command: "echo first"}}
  - {id: second, action: shell, with: {command: "echo second"}}
"""


def _interrupted(svc: Services) -> int:
    """An execution as a killed owner leaves it: interrupted at its second step."""
    execution = svc.store.create_execution(
        runbook="two",
        version=1,
        params={},
        secret_params=[],
        trigger="manual",
        operator="alice",
        owner_id="elsewhere:1:dead",
        step_ids=["first", "second"],
    )
    svc.store.update_execution(
        execution.id,
        status=ExecutionStatus.INTERRUPTED.value,
        current_step="second",
        reason="owner process 1 on elsewhere stopped",
    )
    return execution.id


async def test_r_on_the_run_screen_resumes_an_interrupted_run(tmp_path: Path) -> None:
    svc = Services.open(tmp_path / "s.db", settings=make_settings(), seed=False)
    path = tmp_path / "two.yaml"
    path.write_text(TWO, encoding="utf-8")
    svc.import_runbook(path)
    execution_id = _interrupted(svc)
    app = create_app(svc)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.push_screen(RunScreen(execution_id, spinning=False))
        screen = app.screen
        assert isinstance(screen, RunScreen)
        for _ in range(100):
            if screen.execution is not None:
                break
            await pilot.pause(0.05)
        tree = screen.query_one(StepTree)
        tree.focus()
        for _ in range(5):
            if tree.selected is not None and tree.selected.step_id == "second":
                break
            await pilot.press("down")
        await pilot.press("R")
        await pilot.pause()
        await pilot.press("y")
        status = await svc.engine.wait(execution_id)
        await pilot.pause()
        assert status is ExecutionStatus.SUCCEEDED
        texts = [ln.text for ln in svc.store.get_logs(execution_id)]
        assert "second" in texts and "first" not in texts
        audit = svc.store.list_audit(target_type="execution", target_id=execution_id)
        resumed = [r for r in audit if r.action == "execution.resume"]
        assert resumed[0].detail["from_step"] == "second"


async def test_every_console_shows_how_many_runs_are_interrupted(
    tmp_path: Path,
) -> None:
    svc = Services.open(tmp_path / "s.db", settings=make_settings(), seed=False)
    path = tmp_path / "two.yaml"
    path.write_text(TWO, encoding="utf-8")
    svc.import_runbook(path)
    execution_id = _interrupted(svc)
    app = create_app(svc)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.sub_title == "alice · 1 interrupted (h)"
        await svc.engine.resume(execution_id, actor="alice")
        await svc.engine.wait(execution_id)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.sub_title == "alice"
