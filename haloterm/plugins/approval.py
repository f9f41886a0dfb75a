"""The ``approval`` action: pause the run until authorised people decide."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, StrictStr, field_validator

from haloterm.models import Duration
from haloterm.plugins.base import (
    Action,
    ActionContext,
    ActionInputs,
    ApprovalRequest,
    StepResult,
)


class ApprovalInputs(ActionInputs):
    approvers: list[StrictStr] = Field(min_length=1)
    """Users and ``role:<name>`` groups who may decide; never empty (deny by default).
    """
    message: StrictStr = "Approve this step?"
    timeout: Duration | None = None
    on_timeout: Literal["reject", "approve", "escalate"] = "reject"
    escalate_to: list[StrictStr] = Field(default_factory=list)
    min_approvals: int = Field(default=1, ge=1, le=10)
    allow_self_approval: bool = False

    @field_validator("approvers")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        if any(not v.strip() or v.strip() == "role:" for v in value):
            raise ValueError("approvers must be user names or role:<name>, not blank")
        return value


class ApprovalAction(Action):
    """Waits in ``waiting`` until approved (passes) or rejected / timed out (fails)."""

    name = "approval"
    Inputs = ApprovalInputs
    description = "Pause until an authorised operator approves"

    def static_check(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if inputs.get("on_timeout") == "escalate" and not inputs.get("escalate_to"):
            problems.append(
                ("escalate_to", "on_timeout: escalate needs escalate_to approvers")
            )
        approvers = inputs.get("approvers")
        needed = inputs.get("min_approvals", 1)
        people = len(set(approvers)) if isinstance(approvers, list) else 0
        if (
            isinstance(approvers, list)
            and isinstance(needed, int)
            and not any(str(a).startswith("role:") for a in approvers)
            and needed > people
        ):
            named = f"{people} person" if people == 1 else f"{people} people"
            problems.append(
                (
                    "min_approvals",
                    f"{needed} approvals needed but only {named} named: it could "
                    "never be approved (name more, or a role:)",
                )
            )
        return problems

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        assert isinstance(inputs, ApprovalInputs)
        outcome = await ctx.wait_for_approval(
            ApprovalRequest(
                approvers=inputs.approvers,
                message=inputs.message,
                timeout=inputs.timeout,
                on_timeout=inputs.on_timeout,
                escalate_to=inputs.escalate_to,
                min_approvals=inputs.min_approvals,
                allow_self_approval=inputs.allow_self_approval,
            )
        )
        outputs: dict[str, Any] = {
            "decision": outcome.decision,
            "decided_by": outcome.decided_by,
        }
        if outcome.comment:
            outputs["comment"] = outcome.comment
        who = ", ".join(outcome.decided_by)
        if outcome.decision == "approved":
            ctx.info(
                f"approved by {who}"
                + (f": {outcome.comment}" if outcome.comment else "")
            )
            return StepResult(passed=True, outputs=outputs)
        if outcome.decision == "rejected":
            reason = f"rejected by {who}" + (
                f": {outcome.comment}" if outcome.comment else ""
            )
            return StepResult(passed=False, reason=reason, outputs=outputs)
        return StepResult(passed=False, reason="timeout (no decision)", outputs=outputs)
