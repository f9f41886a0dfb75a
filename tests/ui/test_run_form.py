"""The run form: typed fields, inline errors, secrets, prod confirmation, start."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Select, Static, Switch

from haloterm.app import create_app
from haloterm.screens.run_form import RunForm
from haloterm.services import Services
from tests.ui.conftest import wait_for

FORM_RUNBOOK = """\
name: form-check
title: Form check
tags: [prod]
params:
  host: {type: string, required: true}
  count: {type: integer, default: 3, min: 1, max: 10}
  env: {type: choice, choices: [prod, staging], default: staging}
  dry: {type: boolean, default: true}
  token: {type: secret, required: true}
triggers:
  - manual: true
steps:
  - id: show
    action: shell
    with: {command: "echo {{ params.host }} {{ params.count }} $HALOTERM_X"}
"""


def _import(services: Services, tmp_path: Path, text: str) -> None:
    path = tmp_path / "runbook.yaml"
    path.write_text(text)
    services.import_runbook(path)


async def _open_form(app: object, pilot: object, name: str) -> RunForm:
    from textual.app import App

    assert isinstance(app, App)
    await app.push_screen(RunForm(name))
    form = app.screen
    assert isinstance(form, RunForm)
    await wait_for(pilot, lambda: form.runbook is not None, what="form")  # type: ignore[arg-type]
    await wait_for(pilot, lambda: bool(form.query("#param-0")))  # type: ignore[arg-type]
    return form


async def test_fields_follow_the_param_types(
    services: Services, tmp_path: Path
) -> None:
    _import(services, tmp_path, FORM_RUNBOOK)
    app = create_app(services)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await _open_form(app, pilot, "form-check")
        assert isinstance(form.query_one("#param-0"), Input)
        assert form.query_one("#param-1", Input).value == "3"
        assert form.query_one("#param-2", Select).value == "staging"
        assert form.query_one("#param-3", Switch).value is True
        assert form.query_one("#param-4", Input).password
        assert app.focused is form.query_one("#param-0")


async def test_inline_errors_and_prod_confirmation(
    services: Services, tmp_path: Path
) -> None:
    _import(services, tmp_path, FORM_RUNBOOK)
    app = create_app(services)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await _open_form(app, pilot, "form-check")
        count = form.query_one("#param-1", Input)
        count.value = "11"
        await pilot.pause()
        assert "above the maximum" in str(form.query_one("#error-1", Static).render())
        count.value = "x"
        await pilot.pause()
        assert "whole number" in str(form.query_one("#error-1", Static).render())
        count.value = "4"
        await pilot.pause()
        assert str(form.query_one("#error-1", Static).render()) == ""

        form.query_one("#param-0", Input).focus()
        await pilot.press(*"web-01", "enter")
        await wait_for(
            pilot,
            lambda: "required" in str(form.query_one("#error-4", Static).render()),
        )
        assert isinstance(app.screen, RunForm)
        assert services.store.list_executions(runbook="form-check") == []

        form.query_one("#param-4", Input).value = "s3cr3t-value"
        form.query_one("#confirm-name", Input).value = "form-chekc"
        form.query_one("#confirm-name", Input).focus()
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: (
                "type form-check"
                in str(form.query_one("#error-confirm", Static).render())
            ),
        )
        assert services.store.list_executions(runbook="form-check") == []


async def test_enter_starts_the_run_and_secrets_stay_out_of_the_store(
    services: Services, tmp_path: Path
) -> None:
    from haloterm.screens.run import RunScreen

    _import(services, tmp_path, FORM_RUNBOOK)
    app = create_app(services)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await _open_form(app, pilot, "form-check")
        form.query_one("#param-0", Input).value = "web-01"
        form.query_one("#param-4", Input).value = "s3cr3t-value"
        confirm = form.query_one("#confirm-name", Input)
        confirm.value = "form-check"
        confirm.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run")
        runs = services.store.list_executions(runbook="form-check")
        assert len(runs) == 1
        run = runs[0]
        assert run.trigger == "manual" and run.operator == "alice"
        assert run.params["host"] == "web-01" and run.params["count"] == 3
        assert "s3cr3t-value" not in run.model_dump_json()
        await services.engine.wait(run.id)
    dump = (tmp_path / "s.db").read_bytes()
    assert b"s3cr3t-value" not in dump


async def test_param_errors_from_the_engine_show_beside_fields(
    services: Services, tmp_path: Path
) -> None:
    text = FORM_RUNBOOK.replace("tags: [prod]", "tags: []").replace(
        "host: {type: string, required: true}",
        'host: {type: string, required: true, pattern: "^web-[0-9]+$"}',
    )
    _import(services, tmp_path, text)
    app = create_app(services)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await _open_form(app, pilot, "form-check")
        form.query_one("#param-4", Input).value = "t"
        form.query_one("#param-0", Input).value = "db-01"
        await pilot.pause()
        assert "does not match" in str(form.query_one("#error-0", Static).render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, RunForm)
        await pilot.press("escape")
        assert not isinstance(app.screen, RunForm)


SWITCH_RUNBOOK = """\
name: switch-check
params:
  loud: {type: boolean, default: false}
steps:
  - id: show
    action: shell
    with: {command: "echo loud={{ params.loud }}"}
"""


async def test_space_toggles_a_switch_and_enter_starts_the_run(
    services: Services, tmp_path: Path
) -> None:
    """Enter on a yes/no field used to flip it silently instead of starting."""
    _import(services, tmp_path, SWITCH_RUNBOOK)
    app = create_app(services)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await _open_form(app, pilot, "switch-check")
        switch = form.query_one("#param-0", Switch)
        switch.focus()
        await pilot.press("space")
        assert switch.value is True
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: bool(services.store.list_executions(runbook="switch-check")),
            what="the run to start",
        )
        (execution,) = services.store.list_executions(runbook="switch-check")
        assert execution.params == {"loud": True}
