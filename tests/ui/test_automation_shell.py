"""The console competes for the automation lease and says who holds it."""

from __future__ import annotations

from collections.abc import Callable

from haloterm.app import create_app
from haloterm.services import Services
from tests.ui.conftest import wait_for


async def test_the_title_says_when_another_session_runs_automation(
    services: Services, open_services: Callable[..., Services]
) -> None:
    other = open_services("bob")
    await other.start(automation=True)
    try:
        assert other.automation is not None
        await other.automation.step(force=True)
        assert other.automation.holding
        app = create_app(services, automation=True)
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(
                pilot,
                lambda: "automation runs in another session" in app.sub_title,
                what="the automation note",
            )
            assert "bob" in app.sub_title
            assert services.automation is not None
            assert not services.automation.holding
    finally:
        await other.stop()
