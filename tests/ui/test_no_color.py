"""NO_COLOR: the console drops colour, and nothing it shows is told by colour alone."""

from __future__ import annotations

from typing import Any

import pytest
from textual.color import Color
from textual.filter import Monochrome, NoColor

from haloterm.app import create_app
from haloterm.screens.ticket import TicketScreen
from haloterm.services import Services
from haloterm.widgets.ticket_table import TicketTable
from tests.ui.conftest import wait_for


def screen_lines(app: Any) -> list[str]:
    """The screen as plain text, one string per terminal row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def _run(services: Services, ticket_id: int, status: str) -> None:
    store = services.store
    execution = store.create_execution(
        runbook="disk-report",
        version=1,
        params={},
        secret_params=[],
        trigger="manual",
        operator="alice",
        ticket_id=ticket_id,
        step_ids=["s"],
    )
    store.update_execution(execution.id, status=status)


async def test_no_color_keeps_every_mark_in_text(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    store = services.store
    done = store.create_ticket(title="Old disk alert", priority="P3", actor="a")
    store.update_ticket(done, actor="a", status="resolved")
    failing = store.create_ticket(title="Failing one", priority="P2", actor="a")
    _run(services, done, "succeeded")
    _run(services, failing, "failed")
    app = create_app(services)
    async with app.run_test(size=(120, 30)) as pilot:
        assert app.no_color
        assert any(isinstance(f, (Monochrome, NoColor)) for f in app._filters)
        table = app.screen.query_one(TicketTable)
        await wait_for(pilot, lambda: table.row_count == 8)
        lines = screen_lines(app)

        def row(title: str) -> str:
            return next(line for line in lines if title in line)

        # P1 is a glyph as well as a colour; closed is a word as well as dim.
        assert "▲P1" in row("ApiHighErrorRate")
        assert "▲" not in row("Failing one")
        assert "resolved" in row("Old disk alert")
        # A run's status is a glyph and a word.
        assert "✔ succeeded" in row("Old disk alert")
        assert "✘ failed" in row("Failing one")
        # The ticket screen's head marks P1 with a glyph too.
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, TicketScreen))
        screen = app.screen
        assert isinstance(screen, TicketScreen)
        await wait_for(pilot, lambda: screen.view is not None)
        assert any("▲ P1" in line for line in screen_lines(app))
        # And what reaches the terminal, once filtered, carries only greys.
        for strip in app.screen._compositor.render_strips():
            for line_filter in app._filters:
                strip = strip.apply_filter(line_filter, Color(0, 0, 0))
            for segment in strip:
                style = segment.style
                for colour in (style.color, style.bgcolor) if style else ():
                    if colour is not None and not colour.is_default:
                        red, green, blue = colour.get_truecolor()
                        assert red == green == blue, colour
