"""The Action interface: what a step action is, and what the engine hands it.

An action is a class registered under the ``haloterm.actions`` entry-point group. The
engine validates a step's ``with`` block against the action's ``Inputs`` model before
the run starts, renders the templates, and awaits :meth:`Action.run` with the rendered
inputs and an :class:`ActionContext`. Built-in actions are registered exactly the same
way as third-party ones.

Contract for plug-in authors:

* ``run`` returns a :class:`StepResult` for every outcome it can name (a failed HTTP
  status, a non-zero exit) and raises :class:`ActionError` for a failure with a short
  reason. Any other exception fails the step with the exception's text (masked).
* ``run`` may be cancelled at any ``await`` (step timeout, operator cancel). Clean up
  whatever was started (stop processes, close channels) and re-raise
  ``asyncio.CancelledError``; set :attr:`ActionContext.cancel_note` first when the
  cleanup could not be confirmed, so the reason says so.
* Output goes through :meth:`ActionContext.output` as bytes; the engine decodes,
  masks secrets, stores and streams it. Never log or return secret values.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from datetime import datetime

    from haloterm.models import StepStatus


class ActionInputs(BaseModel):
    """Base of every action's input model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ActionError(Exception):
    """A step failure with a short, operator-facing reason (``connection refused``)."""

    def __init__(self, reason: str, *, exit_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


@dataclass
class StepResult:
    """The outcome of one attempt of a step.

    Attributes:
        passed: whether the attempt succeeded.
        reason: why it failed (``exit 3``, ``signal SIGTERM``, ``HTTP 503``); None when
            it passed.
        exit_code: a process's numeric exit status, None when there was none (killed
            by a signal, no status received, not a process).
        signal: the signal name when a process was killed by one (``SIGTERM``).
        outputs: values later steps read as ``steps.<id>.outputs``; JSON-serialisable.
    """

    passed: bool
    reason: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, **outputs: Any) -> StepResult:
        return cls(
            passed=True, exit_code=outputs.pop("exit_code", None), outputs=outputs
        )

    @classmethod
    def fail(cls, reason: str, **kw: Any) -> StepResult:
        return cls(passed=False, reason=reason, **kw)


class OutputSink(Protocol):
    """Where an action writes the bytes a command or a response produced."""

    def write(self, data: bytes) -> None:
        """Take the next chunk; it may end in the middle of a line or a character."""

    def close(self) -> None:
        """Flush what is left (a last line without a newline)."""


@dataclass(frozen=True)
class ChildResult:
    """What a child run returned to its parent's ``runbook`` step."""

    execution_id: int
    status: str
    outputs: dict[str, Any]
    reason: str | None = None


@dataclass(frozen=True)
class ApprovalRequest:
    """What an approval step asks for; see ``RUNBOOK_FORMAT.md``."""

    approvers: list[str]
    message: str
    timeout: float | None
    on_timeout: Literal["reject", "approve", "escalate"] = "reject"
    escalate_to: list[str] = field(default_factory=list)
    min_approvals: int = 1
    allow_self_approval: bool = False


@dataclass(frozen=True)
class ApprovalOutcome:
    """The decision that ended a wait: ``approved``, ``rejected`` or ``timed_out``."""

    decision: Literal["approved", "rejected", "timed_out"]
    decided_by: list[str]
    comment: str | None = None


class ActionContext(abc.ABC):
    """What the engine hands an action for one attempt of one step.

    Attributes:
        execution_id: the execution's id in the store.
        step_id: the step's id.
        runbook: the runbook's name.
        operator: who started the execution.
        attempt: 1 for the first try, 2 for the first retry, ...
        deadline: the monotonic-clock instant the step times out at, or None.
        log: a logger whose lines carry execution and step ids; secrets are masked.
        secret_env: environment variables that carry secret values referenced from
            command templates (``$HALOTERM_SECRET_<NAME>``); pass them to the process
            environment, never to argv.
        command_env: environment variables that carry the other values substituted
            into command templates (``${HALOTERM_VALUE_<n>}``): the command refers to
            them, so no value is ever read as shell text. Pass them to the process
            environment too.
        config: haloterm's settings (inventory, notify channels, ...), read only.
        cancel_note: set by an action when cancelling could not be confirmed
            (``remote may still be running``); the engine appends it to the reason.
    """

    execution_id: int
    step_id: str
    runbook: str
    operator: str
    attempt: int
    deadline: float | None
    log: logging.LoggerAdapter[logging.Logger]
    secret_env: Mapping[str, str]
    command_env: Mapping[str, str] = MappingProxyType({})
    config: Any
    cancel_note: str | None = None

    @abc.abstractmethod
    def output(self, stream: str = "stdout", host: str = "") -> OutputSink:
        """A sink for one stream's bytes (``stdout``, ``stderr``), per fan-out host."""

    @abc.abstractmethod
    def info(self, text: str, host: str = "") -> None:
        """Add a line of haloterm's own (``connecting to web-01``) to the step's log."""

    @abc.abstractmethod
    def mask(self, text: str) -> str:
        """Return ``text`` with every secret of this execution masked as ``******``."""

    @abc.abstractmethod
    async def set_host_status(
        self,
        host: str,
        status: StepStatus,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
        signal: str | None = None,
    ) -> None:
        """Record and publish the status of one host of a fan-out step."""

    @abc.abstractmethod
    async def run_child(self, runbook: str, params: dict[str, Any]) -> ChildResult:
        """Run another runbook as a child of this step and wait for it to finish.

        Raises:
            ActionError: the child could not start (unknown runbook, bad params, depth
                cap reached with the whole call chain in the reason).
        """

    @abc.abstractmethod
    async def wait_for_approval(self, request: ApprovalRequest) -> ApprovalOutcome:
        """Put the step in ``waiting`` until the request is decided or times out."""

    @abc.abstractmethod
    async def update_ticket(
        self,
        *,
        status: str | None = None,
        note: str | None = None,
        fields: dict[str, Any] | None = None,
        priority: str | None = None,
    ) -> int:
        """Change the execution's ticket and return its id.

        Raises:
            ActionError: the execution has no ticket, or a value is not allowed.
        """

    @abc.abstractmethod
    async def create_ticket(self, **values: Any) -> int:
        """Open a new ticket linked to this execution and return its id."""

    @abc.abstractmethod
    def notify_consoles(self, text: str, severity: str = "information") -> None:
        """Show a toast in every open console (masked, never markup)."""

    @abc.abstractmethod
    def secret(self, name: str) -> str:
        """The value of a secret from the secrets file or environment (for auth, SMTP).

        Raises:
            ActionError: no such secret is configured.
        """

    @abc.abstractmethod
    def now(self) -> datetime:
        """The injected clock's current UTC time."""

    def track_process(self, pid: int, pgid: int) -> None:
        """Record a local process group this step started.

        If haloterm dies while the step runs, whoever finds the run interrupted
        stops the group (same host only). The default does nothing.
        """
        return None

    def untrack_process(self, pid: int) -> None:
        """Forget a process recorded by :meth:`track_process` (it ended)."""
        return None


class Action(abc.ABC):
    """A kind of step. Subclasses set ``name`` and ``Inputs`` and implement ``run``.

    Attributes:
        name: the ``action:`` value that selects it.
        Inputs: the pydantic model its ``with`` block must satisfy.
        command_fields: input fields holding shell command lines. Values substituted
            into them (unless the author marks them ``| raw``) become references to
            environment variables: an action with command fields must start its
            process with ``ctx.command_env`` and ``ctx.secret_env`` in its
            environment.
        description: one line for ``haloterm actions`` and the step editor.
    """

    name: ClassVar[str]
    Inputs: ClassVar[type[ActionInputs]]
    command_fields: ClassVar[frozenset[str]] = frozenset()
    description: ClassVar[str] = ""

    def static_check(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Extra checks on a step's raw ``with`` block at load time.

        Returns:
            ``(field path, message)`` pairs; empty when fine. Templated values are
            checked again at run time, after rendering.
        """
        return []

    def child_runbooks(self, inputs: Mapping[str, Any]) -> list[str]:
        """Names of runbooks this step runs as children, when known before the run."""
        return []

    async def release(self, execution_id: int) -> None:
        """Free what this action keeps for an execution (pooled connections).

        Called once when an execution ends, whatever its outcome; the default does
        nothing.
        """
        return None

    @abc.abstractmethod
    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        """Carry out one attempt of the step.

        Args:
            inputs: an instance of ``Inputs`` with every template rendered.
            ctx: the engine's services for this attempt.

        Returns:
            The attempt's outcome.

        Raises:
            ActionError: a failure with a short reason.
            asyncio.CancelledError: after cleaning up, when cancelled.
        """
