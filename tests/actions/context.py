"""A real, small :class:`ActionContext` for action tests.

:class:`LocalContext` runs an action outside the engine: output goes through a real
:class:`StepOutput` per host with a real :class:`SecretMasker`, host statuses and
console notices are recorded in lists, and the clock is injectable. What only the
engine can do (child runs, approvals, tickets) raises :class:`ActionError`.

Usage::

    ctx = LocalContext(tmp_path, secrets={"db": "S3cr3t!pw"})
    result = await ShellAction().run(ShellAction.Inputs(command="echo hi"), ctx)
    summary = ctx.finish()
    assert ctx.lines("stdout") == ["hi"]
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from haloterm.engine.events import LogLine
from haloterm.engine.output import OutputSummary, StepOutput
from haloterm.masking import SecretMasker
from haloterm.models import StepStatus
from haloterm.plugins.base import (
    ActionContext,
    ActionError,
    ApprovalOutcome,
    ApprovalRequest,
    ChildResult,
    OutputSink,
)

UNAVAILABLE = "not available in this context"


@dataclass(frozen=True)
class HostStatus:
    """One call of :meth:`LocalContext.set_host_status`."""

    host: str
    status: StepStatus
    reason: str | None
    exit_code: int | None
    signal: str | None


class LocalContext(ActionContext):
    """An :class:`ActionContext` that keeps everything it is handed, for assertions.

    Args:
        tmp_path: where each host's output spool file goes (``<host or step>.out``).
        secrets: named secrets for :meth:`secret`; their values are masked.
        secret_env: environment variables carrying secrets; their values are masked.
        clock: the current UTC time; default the real clock.
        live_keep: how many live-only lines to keep in :attr:`live` (the rest are
            counted in :attr:`live_count`), so huge outputs stay cheap.
        output_options: extra keyword arguments for every :class:`StepOutput`
            (``store_head_lines=10``, ``spool_cap=1000``, ...).
    """

    def __init__(
        self,
        tmp_path: Path,
        *,
        secrets: Mapping[str, str] | None = None,
        secret_env: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
        live_keep: int = 10_000,
        output_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.execution_id = 1
        self.step_id = "step"
        self.runbook = "test-runbook"
        self.operator = "alice"
        self.attempt = 1
        self.deadline = None
        self.secret_env = dict(secret_env or {})
        self.config = None
        self.cancel_note = None
        self.log = logging.LoggerAdapter(
            logging.getLogger("tests.actions"), {"execution_id": 1, "step_id": "step"}
        )
        self._secrets = dict(secrets or {})
        self.masker = SecretMasker([*self._secrets.values(), *self.secret_env.values()])
        self._clock = clock or (lambda: datetime.now(UTC))
        self._seq = itertools.count(1)
        self._tmp_path = tmp_path
        self._output_options = dict(output_options or {})
        self.outputs: dict[str, StepOutput] = {}
        self.stored: list[LogLine] = []
        """Lines handed to the store, in order."""
        self.live: deque[LogLine] = deque(maxlen=live_keep)
        """The last live-only lines (past the stored head)."""
        self.live_count = 0
        self.host_statuses: list[HostStatus] = []
        self.notices: list[tuple[str, str]] = []
        self.summaries: dict[str, OutputSummary] = {}

    # -------------------------------------------------------------- reading back

    def step_output(self, host: str = "") -> StepOutput:
        """The :class:`StepOutput` of one host, created on first use."""
        output = self.outputs.get(host)
        if output is None:
            output = self.outputs[host] = StepOutput(
                execution_id=self.execution_id,
                step_id=self.step_id,
                host=host,
                masker=self.masker,
                emit=self.stored.extend,
                live=self._on_live,
                next_seq=self._seq.__next__,
                clock=self._clock,
                spool_path=self._tmp_path / f"{host or self.step_id}.out",
                **self._output_options,
            )
        return output

    def _on_live(self, lines: list[LogLine]) -> None:
        self.live.extend(lines)
        self.live_count += len(lines)

    def finish(self) -> dict[str, OutputSummary]:
        """Close every host's output (as the engine does after ``run``)."""
        for host, output in self.outputs.items():
            self.summaries[host] = output.close()
        return self.summaries

    def lines(self, stream: str = "stdout", host: str = "") -> list[str]:
        """The stored lines of one stream and host, in sequence order."""
        picked = [
            line for line in self.stored if line.stream == stream and line.host == host
        ]
        return [line.text for line in sorted(picked, key=lambda line: line.seq)]

    # -------------------------------------------------------------- the interface

    def output(self, stream: str = "stdout", host: str = "") -> OutputSink:
        return self.step_output(host).sink(stream)

    def info(self, text: str, host: str = "") -> None:
        self.step_output(host).info(text)

    def mask(self, text: str) -> str:
        return self.masker.mask(text)

    async def set_host_status(
        self,
        host: str,
        status: StepStatus,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
        signal: str | None = None,
    ) -> None:
        self.host_statuses.append(HostStatus(host, status, reason, exit_code, signal))

    async def run_child(self, runbook: str, params: dict[str, Any]) -> ChildResult:
        raise ActionError(UNAVAILABLE)

    async def wait_for_approval(self, request: ApprovalRequest) -> ApprovalOutcome:
        raise ActionError(UNAVAILABLE)

    async def update_ticket(
        self,
        *,
        status: str | None = None,
        note: str | None = None,
        fields: dict[str, Any] | None = None,
        priority: str | None = None,
    ) -> int:
        raise ActionError(UNAVAILABLE)

    async def create_ticket(self, **values: Any) -> int:
        raise ActionError(UNAVAILABLE)

    def notify_consoles(self, text: str, severity: str = "information") -> None:
        self.notices.append((self.masker.mask(text), severity))

    def secret(self, name: str) -> str:
        try:
            return self._secrets[name]
        except KeyError:
            raise ActionError(f"no secret named {name!r} is configured") from None

    def now(self) -> datetime:
        return self._clock()
