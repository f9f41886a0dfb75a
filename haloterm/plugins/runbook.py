"""The ``runbook`` action: run another runbook as a child and return its outputs."""

from __future__ import annotations

import re
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
            reason += f": {_innermost(child.reason)}"
        return StepResult(passed=False, reason=reason, outputs=outputs)


_NESTED = re.compile(r"child execution (\d+) \(([^)]*)\) \w+: ")
_FOLDED = re.compile(r" \[in execution (\d+) \(([^)]*)\), (\d+) levels? down\]$")


def _innermost(reason: str) -> str:
    """A child's failure reason with its own children's chain folded: the deepest
    cause once, and where it happened, not every level's words again."""
    nested = list(_NESTED.finditer(reason))
    if not nested:
        return reason
    last = nested[-1]
    cause = reason[last.end() :]
    where, levels = f"{last.group(1)} ({last.group(2)})", len(nested)
    folded = _FOLDED.search(cause)
    if folded is not None:
        cause = cause[: folded.start()]
        where = f"{folded.group(1)} ({folded.group(2)})"
        levels += int(folded.group(3))
    down = f"{levels} level{'s' if levels != 1 else ''} down"
    return f"{cause} [in execution {where}, {down}]"
