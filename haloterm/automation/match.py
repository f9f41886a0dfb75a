"""Which runbooks a ticket calls for: the ``on:`` triggers whose ``match`` fits it.

Pure functions over models, shared by the console (suggestions on a ticket) and the
automation rules (firing on ticket events).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from haloterm.models import Runbook, Ticket, TicketMatch, Trigger

if TYPE_CHECKING:
    from haloterm.engine.templates import Renderer


@dataclass(frozen=True)
class RunbookMatch:
    """A runbook whose ``on:`` trigger fits a ticket, with that trigger.

    Attributes:
        runbook: the runbook.
        trigger: the first ``on:`` trigger of the runbook that matched; its ``params``
            are templates over ``ticket``.
    """

    runbook: Runbook
    trigger: Trigger


def _fits(expected: str | list[str] | None, actual: Any) -> bool:
    if expected is None:
        return True
    if actual is None:
        return False
    wanted = [expected] if isinstance(expected, str) else expected
    return str(actual) in wanted


def ticket_matches(ticket: Ticket, match: TicketMatch | None) -> bool:
    """Tell whether a ticket fits a trigger's ``match`` block.

    Each given key must equal the ticket's value; a list means any of its values. A
    missing ``match`` fits every ticket.

    Args:
        ticket: the ticket.
        match: the trigger's ``match`` block, or None.

    Returns:
        True when every given key fits.
    """
    if match is None:
        return True
    simple = (
        (match.type, ticket.type),
        (match.priority, ticket.priority),
        (match.category, ticket.category),
        (match.status, ticket.status),
    )
    if not all(_fits(expected, actual) for expected, actual in simple):
        return False
    return all(
        _fits(expected, ticket.fields.get(key))
        for key, expected in match.fields.items()
    )


def matching_runbooks(
    ticket: Ticket, runbooks: Iterable[Runbook]
) -> list[RunbookMatch]:
    """Runbooks with an ``on:`` trigger whose ``match`` fits the ticket, in given order.

    Args:
        ticket: the ticket.
        runbooks: candidate runbooks.

    Returns:
        One entry per fitting runbook, holding its first fitting trigger.
    """
    found: list[RunbookMatch] = []
    for runbook in runbooks:
        for trigger in runbook.triggers:
            if trigger.on is not None and ticket_matches(ticket, trigger.match):
                found.append(RunbookMatch(runbook, trigger))
                break
    return found


def trigger_params(
    trigger: Trigger, ticket: Ticket, renderer: Renderer | None = None
) -> dict[str, Any]:
    """Render a trigger's ``params`` templates over ``ticket``.

    Args:
        trigger: the ``on:`` trigger whose params to render.
        ticket: the ticket the run is for.
        renderer: a shared renderer, or None for a new one.

    Returns:
        The params, rendered.

    Raises:
        haloterm.engine.templates.TemplateError: a template names something undefined
            or is invalid.
    """
    from haloterm.engine.templates import Renderer

    renderer = renderer or Renderer()
    context = {"ticket": ticket.model_dump(mode="json")}
    rendered: dict[str, Any] = renderer.render(dict(trigger.params), context).value
    return rendered
