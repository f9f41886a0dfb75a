"""Keys typed faster than the console loads: held, then replayed in order (issue
"Console": run the suggested runbook on the newest P1 in at most 4 keys)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual import events
from textual.pilot import Pilot

from haloterm.app import create_app
from haloterm.screens.run_form import RunForm
from haloterm.services import Services
from tests.ui.conftest import wait_for
from tests.ui.test_end_to_end import TRIAGE


def type_at_once(pilot: Pilot[None], *keys: str) -> None:
    """Queue every key with the terminal driver without waiting in between, as a
    fast typist (or a paste of keys) would."""
    driver = pilot.app._driver
    assert driver is not None
    for key in keys:
        named = {"enter": "\r", "escape": "\x1b"}
        char = named.get(key, key if len(key) == 1 else None)
        event = events.Key(key, char)
        event.set_sender(pilot.app)
        driver.send_message(event)


async def test_p_r_enter_typed_at_once_starts_the_suggested_run(
    services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "triage.yaml"
    path.write_text(TRIAGE)
    services.import_runbook(path)
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        type_at_once(pilot, "p", "r", "enter")
        await wait_for(pilot, lambda: bool(services.engine.active), what="run started")
        run = services.store.get_execution(services.engine.active[0])
        assert run is not None and run.runbook == "checkout-triage"
        assert run.params == {"host": "app-03.example.internal"}
        assert not any(isinstance(s, RunForm) for s in app.screen_stack)


async def test_a_y_and_a_comment_typed_at_once_approve(
    open_services: Callable[..., Services], tmp_path: Path
) -> None:
    """From any screen, two keys (plus the comment) approve the waiting step."""
    bob = open_services("bob", seed=True)
    app = create_app(bob)
    async with app.run_test(size=(100, 30)) as pilot:
        execution_id = await bob.engine.start(
            "onboard-new-joiner",
            {
                "full_name": "Dana",
                "username": "dana",
                "start_date": "2026-12-07",
                "root": str(tmp_path),
            },
            operator="alice",
        )
        await wait_for(pilot, lambda: app.waiting_approvals == 1, what="waiting")
        type_at_once(pilot, "a", "y", *"ok", "enter")
        await wait_for(
            pilot,
            lambda: (
                (a := bob.store.get_approval(execution_id, "approval")) is not None
                and a.status == "approved"
            ),
            what="approved",
        )
        approval = bob.store.get_approval(execution_id, "approval")
        assert approval is not None and approval.comment == "ok"
        await bob.engine.wait(execution_id)
