"""The engine's implementation of :class:`~haloterm.plugins.base.ActionContext`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from haloterm.engine.events import Notice
from haloterm.engine.output import StepOutput
from haloterm.models import StepStatus
from haloterm.plugins.base import (
    ActionContext,
    ActionError,
    ApprovalOutcome,
    ApprovalRequest,
    ChildResult,
    OutputSink,
)

if TYPE_CHECKING:
    from haloterm.engine.runner import Engine, RunState


class StepLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the execution and step it belongs to."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return (
            f"[exec {extra.get('execution_id')} {extra.get('step_id')}] {msg}",
            kwargs,
        )


class EngineContext(ActionContext):
    """One attempt of one step, as the engine hands it to an action."""

    def __init__(
        self,
        engine: Engine,
        run: RunState,
        step_id: str,
        attempt: int,
        deadline: float | None,
        secret_env: Mapping[str, str],
        command_env: Mapping[str, str],
    ) -> None:
        self._engine = engine
        self._run = run
        self.execution_id = run.execution_id
        self.step_id = step_id
        self.runbook = run.runbook.name
        self.operator = run.operator
        self.attempt = attempt
        self.deadline = deadline
        self.secret_env = secret_env
        self.command_env = command_env
        self.config = engine.settings
        self.cancel_note = None
        self.log = StepLogAdapter(
            logging.getLogger("haloterm.action"),
            {"execution_id": run.execution_id, "step_id": step_id},
        )
        self._outputs: dict[str, StepOutput] = {}

    # -- output ------------------------------------------------------------------

    def step_output(self, host: str = "") -> StepOutput:
        """The output collector of this step (or one host of it), made on first use."""
        found = self._outputs.get(host)
        if found is None:
            found = self._engine.new_step_output(self._run, self.step_id, host)
            self._outputs[host] = found
        return found

    def output(self, stream: str = "stdout", host: str = "") -> OutputSink:
        return self.step_output(host).sink(stream)

    def info(self, text: str, host: str = "") -> None:
        self.step_output(host).info(self._run.masker.mask(text))

    def mask(self, text: str) -> str:
        return self._run.masker.mask(text)

    def close_outputs(self) -> dict[str, Any]:
        """Flush every collector; return what the step's own output summary says."""
        summaries = {host: out.close() for host, out in self._outputs.items()}
        own = summaries.get("")
        if own is None:
            return {}
        return {
            "output": own.output,
            "output_bytes": own.bytes_total,
            "output_truncated": own.truncated,
            "output_file": str(own.spool_path) if own.spool_path else None,
        }

    # -- engine services -----------------------------------------------------------

    async def set_host_status(
        self,
        host: str,
        status: StepStatus,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
        signal: str | None = None,
    ) -> None:
        await self._engine.record_host(
            self._run, self.step_id, host, status, reason, exit_code, signal
        )

    async def run_child(self, runbook: str, params: dict[str, Any]) -> ChildResult:
        return await self._engine.run_child(self._run, self.step_id, runbook, params)

    async def wait_for_approval(self, request: ApprovalRequest) -> ApprovalOutcome:
        return await self._engine.wait_for_approval(self._run, self.step_id, request)

    async def update_ticket(
        self,
        *,
        status: str | None = None,
        note: str | None = None,
        fields: dict[str, Any] | None = None,
        priority: str | None = None,
    ) -> int:
        ticket_id = self._run.ticket_id
        if ticket_id is None:
            raise ActionError("this execution has no ticket")
        await self._engine.update_ticket(
            self._run,
            ticket_id,
            status=status,
            note=self.mask(note) if note else None,
            fields=fields,
            priority=priority,
        )
        return ticket_id

    async def create_ticket(self, **values: Any) -> int:
        return await self._engine.create_ticket(self._run, values)

    def notify_consoles(self, text: str, severity: str = "information") -> None:
        self._engine.bus.publish(Notice(text=self.mask(text), severity=severity))

    def secret(self, name: str) -> str:
        try:
            return self._engine.secrets[name]
        except KeyError:
            raise ActionError(f"no secret named {name!r} is configured") from None

    def now(self) -> datetime:
        return self._engine.clock()

    def track_process(self, pid: int, pgid: int) -> None:
        store = self._engine.store
        store.record_process(self.execution_id, self.step_id, pid=pid, pgid=pgid)

    def untrack_process(self, pid: int) -> None:
        self._engine.store.forget_process(self.execution_id, pid)
