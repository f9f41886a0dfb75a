"""The ``ticket`` action: update the run's ticket, or open a new one."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictStr, model_validator

from haloterm.masking import mask_tree
from haloterm.models import PRIORITIES, TicketStatus, TicketType
from haloterm.plugins.base import Action, ActionContext, ActionInputs, StepResult


class NewTicket(ActionInputs):
    title: StrictStr
    type: TicketType = TicketType.TASK
    priority: StrictStr = "P3"
    description: StrictStr = ""
    category: StrictStr | None = None
    fields: dict[StrictStr, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _priority(self) -> NewTicket:
        if self.priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
        return self


class TicketInputs(ActionInputs):
    status: TicketStatus | None = None
    priority: StrictStr | None = None
    note: StrictStr | None = None
    fields: dict[StrictStr, Any] | None = None
    create: NewTicket | None = None
    """Open a new ticket instead of changing the run's own."""

    @model_validator(mode="after")
    def _one_kind(self) -> TicketInputs:
        changes = [self.status, self.priority, self.note, self.fields]
        if self.create is not None and any(c is not None for c in changes):
            raise ValueError(
                "use either `create` or changes to the run's ticket, not both"
            )
        if self.create is None and all(c is None for c in changes):
            raise ValueError(
                "give at least one of status, priority, note, fields or create"
            )
        if self.priority is not None and self.priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
        return self


class TicketAction(Action):
    """Changes the execution's ticket (status, priority, note, fields) or opens one."""

    name = "ticket"
    Inputs = TicketInputs
    description = "Update the run's ticket or open a new one"

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        assert isinstance(inputs, TicketInputs)
        if inputs.create is not None:
            values = mask_tree(inputs.create.model_dump(), ctx.mask)
            values["type"] = inputs.create.type.value
            ticket_id = await ctx.create_ticket(**values)
            ctx.info(f"opened ticket {ticket_id}")
            return StepResult(
                passed=True, outputs={"ticket_id": ticket_id, "created": True}
            )
        ticket_id = await ctx.update_ticket(
            status=inputs.status.value if inputs.status else None,
            note=ctx.mask(inputs.note) if inputs.note else None,
            fields=mask_tree(inputs.fields, ctx.mask) if inputs.fields else None,
            priority=inputs.priority,
        )
        ctx.info(f"updated ticket {ticket_id}")
        return StepResult(
            passed=True, outputs={"ticket_id": ticket_id, "created": False}
        )
