"""The app shell: global keys, help, palette, quit, size notice, toasts, logging."""

from __future__ import annotations

import logging

from textual.command import CommandPalette

from haloterm.app import HalotermApp, create_app
from haloterm.config import state_dir
from haloterm.engine.events import Notice
from haloterm.screens.approvals import ApprovalsScreen
from haloterm.screens.dialogs import ChoiceScreen, ConfirmScreen
from haloterm.screens.help import HelpScreen
from haloterm.screens.history import HistoryScreen
from haloterm.screens.main import MainScreen
from haloterm.screens.schedules import SchedulesScreen
from haloterm.screens.ticket import TicketScreen
from haloterm.screens.too_small import TooSmallScreen
from haloterm.services import Services
from tests.ui.conftest import wait_for


async def test_help_lists_the_keys_of_the_current_screen(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.plain
        assert "Newest P1" in text and "Filter" in text and "Approvals" in text
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_a_opens_approvals_from_any_screen(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("p")
        await wait_for(pilot, lambda: not isinstance(app.screen, MainScreen))
        await pilot.press("a")
        assert isinstance(app.screen, ApprovalsScreen)
        await pilot.press("a")
        assert len([s for s in app.screen_stack if isinstance(s, ApprovalsScreen)]) == 1


async def test_palette_offers_console_commands(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)):
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Approvals", "History", "Help", "Quit haloterm", "Newest P1"} <= set(
            titles
        )
        assert "Quit" not in titles


def _keys_offered(app: HalotermApp) -> set[str]:
    """Descriptions of the keys the current screen offers (enabled, described)."""
    return {
        active.binding.description
        for active in app.screen.active_bindings.values()
        if active.enabled and active.binding.description
    }


async def test_every_key_of_every_screen_is_in_the_palette(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        visited = []
        for key, screen_type in (
            ("", MainScreen),
            ("p", TicketScreen),
            ("h", HistoryScreen),
            ("w", SchedulesScreen),
            ("a", ApprovalsScreen),
        ):
            if key:
                await pilot.press(key)
            await wait_for(pilot, lambda t=screen_type: isinstance(app.screen, t))  # type: ignore[misc]
            titles = {c.title for c in app.get_system_commands(app.screen)}
            missing = _keys_offered(app) - titles - {"Quit", "Back"}
            assert not missing, f"{screen_type.__name__}: {missing}"
            visited.append(screen_type)
        assert len(visited) == 5


async def test_a_screen_command_runs_from_the_palette(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, TicketScreen))
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"status")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        dialog = app.screen
        assert isinstance(dialog, ChoiceScreen) and dialog.prompt_title == "Status"


async def test_too_small_notice_and_recovery(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, MainScreen)
        await pilot.resize_terminal(40, 10)
        await pilot.pause()
        assert isinstance(app.screen, TooSmallScreen)
        assert "need 60x16" in str(app.screen.query_one("#notice").render())
        await pilot.press("a")
        assert isinstance(app.screen, TooSmallScreen)
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


async def test_quit_without_runs_exits(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_notice_becomes_a_plain_toast(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        services.engine.bus.publish(Notice("[/ [bold]x[/bold]", severity="warning"))
        await pilot.pause()
        notes = list(app._notifications)
        assert notes[-1].message == "[/ [bold]x[/bold]"
        assert notes[-1].markup is False
        assert notes[-1].severity == "warning"


async def test_worker_failure_becomes_a_notification(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:

        def boom() -> None:
            raise RuntimeError("disk [/var] on fire")

        app.run_worker(boom, name="boom", thread=True, exit_on_error=False)
        for _ in range(200):
            await pilot.pause(0.01)
            if app._notifications:
                break
        note = list(app._notifications)[-1]
        assert note.severity == "error"
        assert "disk [/var] on fire" in note.message


async def test_logs_go_to_the_state_dir(services: Services) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        logging.getLogger("haloterm.test").warning("hello %s", "log file")
        await pilot.pause()
    text = (state_dir() / "haloterm.log").read_text()
    assert "hello log file" in text
    assert not [
        h for h in logging.getLogger().handlers if getattr(h, "_haloterm", False)
    ]


async def test_quit_with_active_runs_asks_first(
    services: Services, tmp_path: object
) -> None:
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await services.engine.start(
            "onboard-new-joiner",
            {"full_name": "Dana", "username": "dana", "start_date": "2026-12-07"},
            operator="alice",
        )
        await wait_for(pilot, lambda: bool(services.engine.active))
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        assert "interrupted" in app.screen.question
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("ctrl+q")  # Textual's quit key asks too
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.press("q", "y")
        await pilot.pause()
    assert app.return_code == 0
