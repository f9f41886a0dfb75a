"""The ticket screen: fields, history, suggested runbooks, status, priority, notes."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from haloterm.app import create_app
from haloterm.screens.run_form import RunForm
from haloterm.screens.ticket import TicketScreen
from haloterm.services import Services
from tests.ui.conftest import wait_for


def _ticket_id(services: Services, title_start: str) -> int:
    from haloterm.storage import TicketQuery

    rows = services.store.query_tickets(TicketQuery(limit=100)).rows
    return next(t.id for t in rows if t.title.startswith(title_start))


async def test_suggests_fitting_runbooks_first_with_prefilled_params(
    services: Services,
) -> None:
    ticket_id = _ticket_id(services, "New joiner")
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.push_screen(TicketScreen(ticket_id))
        screen = app.screen
        assert isinstance(screen, TicketScreen)
        await wait_for(pilot, lambda: screen.view is not None, what="ticket")
        assert screen.view is not None
        first = screen.view.suggestions[0]
        assert first.name == "onboard-new-joiner" and first.matched
        assert first.params["username"] == "dana.whitfield"
        assert not any(s.matched for s in screen.view.suggestions[1:])
        fields = str(screen.query_one("#ticket-fields", Static).render())
        assert "dana.whitfield" in fields
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunForm))
        form = app.screen
        assert isinstance(form, RunForm)
        assert form.ticket_id == ticket_id
        assert form.prefill["start_date"] == "2026-12-07"


async def test_c28_title_and_description_shown_literally(services: Services) -> None:
    ticket_id = services.store.create_ticket(
        title="[link=http://evil.example]click[/link]",
        description="[bold]URGENT[/bold] and [/",
        fields={"path": "[/var]"},
        actor="alice",
    )
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.push_screen(TicketScreen(ticket_id))
        screen = app.screen
        assert isinstance(screen, TicketScreen)
        await wait_for(pilot, lambda: screen.view is not None)
        head = screen.query_one("#ticket-head", Static).render()
        assert "[link=http://evil.example]click[/link]" in str(head)
        body = str(screen.query_one("#ticket-description", Static).render())
        assert body == "[bold]URGENT[/bold] and [/"
        assert "[/var]" in str(screen.query_one("#ticket-fields", Static).render())


async def test_status_priority_and_note_are_recorded(services: Services) -> None:
    ticket_id = _ticket_id(services, "Disk full")
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.push_screen(TicketScreen(ticket_id))
        screen = app.screen
        assert isinstance(screen, TicketScreen)
        await wait_for(pilot, lambda: screen.view is not None)

        await pilot.press("t", "down", "enter")
        await wait_for(
            pilot,
            lambda: (
                screen.view is not None and screen.view.ticket.status == "acknowledged"
            ),
            what="status",
        )
        await pilot.press("p", "up", "enter")
        await wait_for(
            pilot,
            lambda: screen.view is not None and screen.view.ticket.priority == "P1",
            what="priority",
        )
        await pilot.press("n", *"checked [/var] by hand", "enter")
        await wait_for(
            pilot,
            lambda: (
                screen.view is not None
                and any(e.kind == "note" for e in screen.view.history)
            ),
            what="note",
        )
        history = str(screen.query_one("#ticket-history", Static).render())
        assert "checked [/var] by hand" in history
        _check_recorded(services, ticket_id)


def _check_recorded(services: Services, ticket_id: int) -> None:
    kinds = [e.kind for e in services.store.ticket_history(ticket_id)]
    assert {"status_changed", "priority_changed", "note"} <= set(kinds)
    audit = services.store.list_audit(target_type="ticket", target_id=str(ticket_id))
    assert audit and all(a.actor == "alice" for a in audit[:3])


async def test_linked_runs_show_live_status(
    services: Services, tmp_path: object
) -> None:
    ticket_id = _ticket_id(services, "New joiner")
    app = create_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.push_screen(TicketScreen(ticket_id))
        screen = app.screen
        assert isinstance(screen, TicketScreen)
        await wait_for(pilot, lambda: screen.view is not None)
        execution_id = await services.engine.start(
            "onboard-new-joiner",
            {"full_name": "Dana", "username": "dana", "start_date": "2026-12-07"},
            operator="alice",
            ticket_id=ticket_id,
        )
        runs = screen.query_one("#runs", DataTable)
        await wait_for(
            pilot,
            lambda: (
                runs.row_count == 1
                and "waiting"
                in str(runs.get_cell(str(execution_id), runs.ordered_columns[2].key))
            ),
            what="waiting run",
        )
        await services.engine.cancel(execution_id, actor="alice")
        await wait_for(
            pilot,
            lambda: (
                "cancelled"
                in str(runs.get_cell(str(execution_id), runs.ordered_columns[2].key))
            ),
            what="cancelled run",
        )
