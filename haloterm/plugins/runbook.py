"""The ``runbook`` action: run another runbook as a child and return its outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, StrictStr

from haloterm.engine.templates import is_templated
from haloterm.plugins.base import Action, ActionContext, ActionInputs, StepResult


class RunbookInputs(ActionInputs):
    runbook: StrictStr
    """The child runbook's name."""
    params: dict[StrictStr, Any] = Field(default_factory=dict)


class RunbookAction(Action):
    """Starts a child execution linked to this step; passes when the child succeeds.

    The child's step outputs come back as ``steps.<id>.outputs.steps.<child step>``.
    """

    name = "runbook"
    Inputs = RunbookInputs
    description = "Run another runbook as a child"

    def child_runbooks(self, inputs: Mapping[str, Any]) -> list[str]:
        name = inputs.get("runbook")
        if isinstance(name, str) and not is_templated(name):
            return [name]
        return []

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        assert isinstance(inputs, RunbookInputs)
        child = await ctx.run_child(inputs.runbook, dict(inputs.params))
        outputs = {
            "execution_id": child.execution_id,
            "status": child.status,
            "steps": child.outputs,
        }
        if child.status == "succeeded":
            return StepResult(passed=True, outputs=outputs)
        reason = (
            f"child execution {child.execution_id} ({inputs.runbook}) {child.status}"
        )
        if child.reason:
            reason += f": {child.reason}"
        return StepResult(passed=False, reason=reason, outputs=outputs)
