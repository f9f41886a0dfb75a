"""Which runbooks a ticket's fields call for."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from haloterm.automation.match import matching_runbooks, ticket_matches, trigger_params
from haloterm.engine.templates import TemplateError
from haloterm.models import Runbook, Ticket, TicketMatch

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _ticket(**kw: Any) -> Ticket:
    base: dict[str, Any] = {"id": 1, "title": "t", "created_at": NOW, "updated_at": NOW}
    return Ticket(**(base | kw))


def _runbook(name: str, *triggers: dict[str, Any]) -> Runbook:
    return Runbook.model_validate(
        {
            "name": name,
            "triggers": list(triggers),
            "steps": [{"id": "s", "action": "shell", "with": {"command": "true"}}],
        }
    )


def test_each_given_key_must_equal() -> None:
    match = TicketMatch(type="incident", priority="P1")
    assert ticket_matches(_ticket(type="incident", priority="P1"), match)
    assert not ticket_matches(_ticket(type="incident", priority="P2"), match)
    assert not ticket_matches(_ticket(type="request", priority="P1"), match)


def test_a_list_means_any_of() -> None:
    match = TicketMatch(priority=["P1", "P2"])
    assert ticket_matches(_ticket(priority="P2"), match)
    assert not ticket_matches(_ticket(priority="P3"), match)


def test_category_and_fields() -> None:
    match = TicketMatch(category="web", fields={"env": ["prod", "dr"]})
    fits = _ticket(category="web", fields={"env": "dr"})
    assert ticket_matches(fits, match)
    assert not ticket_matches(_ticket(category=None, fields={"env": "dr"}), match)
    assert not ticket_matches(_ticket(category="web", fields={}), match)
    assert not ticket_matches(_ticket(category="web", fields={"env": "qa"}), match)


def test_no_match_block_fits_everything() -> None:
    assert ticket_matches(_ticket(), None)
    assert ticket_matches(_ticket(), TicketMatch())


def test_matching_runbooks_keeps_order_and_first_trigger() -> None:
    web = _runbook(
        "restart-web",
        {"manual": True},
        {"on": "ticket.created", "match": {"priority": "P1"}, "params": {"a": "1"}},
        {"on": "ticket.updated", "params": {"a": "2"}},
    )
    disk = _runbook("disk", {"on": "ticket.created", "match": {"category": "disk"}})
    manual = _runbook("manual-only", {"manual": True})
    found = matching_runbooks(_ticket(priority="P1"), [manual, disk, web])
    assert [m.runbook.name for m in found] == ["restart-web"]
    assert found[0].trigger.params == {"a": "1"}
    found = matching_runbooks(_ticket(priority="P3", category="disk"), [web, disk])
    assert [m.runbook.name for m in found] == ["restart-web", "disk"]
    assert found[0].trigger.params == {"a": "2"}


def test_trigger_params_render_over_the_ticket() -> None:
    web = _runbook(
        "restart-web",
        {
            "on": "ticket.created",
            "params": {"host": "{{ ticket.fields.host }}", "why": "{{ ticket.title }}"},
        },
    )
    ticket = _ticket(title="Disk full on [/var] again", fields={"host": "web-01"})
    params = trigger_params(web.triggers[0], ticket)
    assert params == {"host": "web-01", "why": "Disk full on [/var] again"}


def test_trigger_params_undefined_is_an_error() -> None:
    web = _runbook(
        "restart-web", {"on": "ticket.created", "params": {"host": "{{ ticket.nope }}"}}
    )
    with pytest.raises(TemplateError):
        trigger_params(web.triggers[0], _ticket())
