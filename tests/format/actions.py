"""Small actions with strict inputs, so the loader's tests do not depend on the
built-in plug-ins."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, StrictStr

from haloterm.engine.templates import is_templated
from haloterm.plugins.base import Action, ActionContext, ActionInputs, StepResult


class ShellInputs(ActionInputs):
    command: StrictStr
    env: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class ShellAction(Action):
    name = "shell"
    Inputs = ShellInputs
    command_fields = frozenset({"command"})

    def static_check(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        if inputs.get("command") == "":
            return [("command", "must not be empty")]
        return []

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        return StepResult.ok()


class WaitInputs(ActionInputs):
    until: StrictStr | None = None
    seconds: int | None = Field(default=None, strict=True)


class WaitAction(Action):
    name = "wait"
    Inputs = WaitInputs

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        return StepResult.ok()


class HttpInputs(ActionInputs):
    url: StrictStr
    method: Literal["GET", "POST"] = "GET"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    headers: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class HttpAction(Action):
    name = "http"
    Inputs = HttpInputs

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        return StepResult.ok()


class RunbookInputs(ActionInputs):
    runbook: StrictStr
    params: dict[StrictStr, Any] = Field(default_factory=dict)


class RunbookAction(Action):
    name = "runbook"
    Inputs = RunbookInputs

    def child_runbooks(self, inputs: Mapping[str, Any]) -> list[str]:
        name = inputs.get("runbook")
        return [name] if isinstance(name, str) and not is_templated(name) else []

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        return StepResult.ok()


ALL = [ShellAction, WaitAction, HttpAction, RunbookAction]
