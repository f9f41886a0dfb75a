"""The runbook file format and the records haloterm keeps, as pydantic models.

The runbook models follow ``RUNBOOK_FORMAT.md``: every field there has a home here, and
unknown fields are errors. Values that YAML 1.1 likes to reinterpret (durations, ids,
names, string defaults) are strict, so ``1:30`` or ``NO`` never slip through as 90 or
False.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    model_validator,
)

from haloterm.durations import parse_duration

SLUG = re.compile(r"[a-z0-9][a-z0-9-]*")
STEP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _slug(value: str) -> str:
    if len(value) > 64 or not SLUG.fullmatch(value):
        raise ValueError(
            f'"{value}" is not a valid name: use lowercase letters, digits and "-", '
            "starting with a letter or digit, at most 64 characters"
        )
    return value


def _step_id(value: str) -> str:
    if len(value) > 64 or not STEP_ID.fullmatch(value):
        raise ValueError(
            f'"{value}" is not a valid step id: use letters, digits, "-" and "_"'
        )
    return value


Slug = Annotated[StrictStr, AfterValidator(_slug)]
StepId = Annotated[StrictStr, AfterValidator(_step_id)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in the file as ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``."""


class Strict(BaseModel):
    """Base of every file-format model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# --------------------------------------------------------------------------- params


class ParamType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    SECRET = "secret"


class Param(Strict):
    """One typed input of a runbook."""

    type: ParamType = ParamType.STRING
    """The value's type; `secret` values are never shown, logged or stored."""
    required: StrictBool = False
    default: Any = None
    """Used when the caller gives no value; must already have the param's type."""
    description: StrictStr | None = None
    choices: list[StrictStr] | None = None
    """The allowed values of a `choice` param."""
    min: float | None = None
    max: float | None = None
    pattern: StrictStr | None = None
    """A regular expression the whole value must match (strings)."""

    @model_validator(mode="after")
    def _check(self) -> Param:
        if self.type is ParamType.CHOICE and not self.choices:
            raise ValueError("a choice param needs a non-empty `choices` list")
        if self.type is not ParamType.CHOICE and self.choices is not None:
            raise ValueError("`choices` only applies to `type: choice`")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(
                    f"`pattern` is not a valid regular expression: {exc}"
                ) from None
        if self.type is ParamType.SECRET and self.default is not None:
            raise ValueError(
                "a secret param cannot have a default: secrets come from the "
                "environment or the secrets file, never from runbook files"
            )
        if self.default is not None:
            from haloterm.params import coerce_param

            coerce_param(self, self.default, strict=True)
        return self


# --------------------------------------------------------------------------- triggers


class TicketEvent(StrEnum):
    CREATED = "ticket.created"
    UPDATED = "ticket.updated"
    PRIORITY_CHANGED = "ticket.priority_changed"
    STATUS_CHANGED = "ticket.status_changed"


MatchValue = StrictStr | list[StrictStr]


class TicketMatch(Strict):
    """Which tickets a rule fires on; a list means any of its values."""

    type: MatchValue | None = None
    priority: MatchValue | None = None
    category: MatchValue | None = None
    status: MatchValue | None = None
    fields: dict[StrictStr, MatchValue] = Field(default_factory=dict)


class Schedule(Strict):
    """When a scheduled trigger fires: a five-field ``cron`` or an ``every`` period."""

    cron: StrictStr | None = None
    every: Duration | None = None
    timezone: StrictStr = "UTC"
    misfire: Literal["coalesce", "skip"] = "coalesce"
    """`coalesce`: one run for the latest missed slot within the grace; `skip`: none."""
    misfire_grace: Duration = 3600.0
    allow_overlap: StrictBool = False

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule needs exactly one of `cron` or `every`")
        return self


class Trigger(Strict):
    """One way a runbook starts: by hand, on a ticket event, or on a schedule."""

    manual: StrictBool | None = None
    on: TicketEvent | None = None
    match: TicketMatch | None = None
    params: dict[StrictStr, Any] = Field(default_factory=dict)
    """Params for runs this trigger starts; values may be templates over `ticket`."""
    schedule: Schedule | None = None
    dedupe: StrictStr | None = None
    """A template; firings rendering the same key within `cooldown` are suppressed."""
    cooldown: Duration | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        kinds = [
            self.manual is not None,
            self.on is not None,
            self.schedule is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError(
                "a trigger needs exactly one of `manual`, `on` or `schedule`"
            )
        if self.match is not None and self.on is None:
            raise ValueError("`match` only applies to an `on:` trigger")
        return self


# --------------------------------------------------------------------------- steps


class Retries(Strict):
    count: int = Field(default=0, ge=0, le=100, strict=True)
    delay: Duration = 0.0
    backoff: float = Field(default=1.0, ge=1.0, le=10.0)


class Goto(Strict):
    goto: StepId


class RunRunbook(Strict):
    run: Slug


OnFailure = Literal["abort", "continue"] | Goto | RunRunbook


class Step(Strict):
    """One step of a runbook."""

    id: StepId
    name: StrictStr | None = None
    action: StrictStr
    """`shell`, `ssh`, `http`, `notify`, `ticket`, `approval`, `runbook`, `wait`, or a
    plug-in's action name."""
    with_: dict[StrictStr, Any] = Field(default_factory=dict, alias="with")
    when: StrictStr | None = None
    """A template that must render true, or the step is skipped."""
    timeout: Duration | None = None
    retries: Retries = Field(default_factory=Retries)
    on_failure: OnFailure = "abort"
    only_on_failure: StrictBool = False
    """Reached only through a `goto` or an `on_failure` branch, never in order."""
    idempotent: StrictBool = False

    @property
    def title(self) -> str:
        return self.name or self.id


RunEvent = Literal["start", "success", "failure", "waiting"]
"""Moments of a run that a runbook-level ``notify`` entry can announce."""


class RunNotify(Strict):
    """One runbook-level ``notify`` entry: a channel told of some run events."""

    channel: StrictStr
    """A channel name from config, ``email:<address>`` or ``console``."""
    on: list[RunEvent] = Field(min_length=1)
    """Which events: ``start``, ``success``, ``failure``, ``waiting``."""
    message: StrictStr | None = None
    """A template; a default text names the run and the event when absent."""
    title: StrictStr | None = None
    """A heading, and the email subject (a template)."""


class Runbook(Strict):
    """A whole runbook file."""

    name: Slug
    title: StrictStr | None = None
    description: StrictStr | None = None
    tags: list[StrictStr] = Field(default_factory=list)
    params: dict[StrictStr, Param] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    single_instance: StrictBool = False
    """At most one execution of this runbook at a time, child runs included."""
    notify: list[RunNotify] = Field(default_factory=list)
    """Channels told when the run starts, succeeds, fails or waits for approval."""

    @property
    def display_title(self) -> str:
        return self.title or self.name

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def step_index(self, step_id: str) -> int:
        for index, step in enumerate(self.steps):
            if step.id == step_id:
                return index
        raise KeyError(step_id)

    @property
    def secret_params(self) -> set[str]:
        return {k for k, p in self.params.items() if p.type is ParamType.SECRET}


# --------------------------------------------------------------------------- runtime


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self in (StepStatus.PASSED, StepStatus.FAILED, StepStatus.SKIPPED)


class ExecutionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self in (
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
            ExecutionStatus.INTERRUPTED,
        )


class TicketType(StrEnum):
    INCIDENT = "incident"
    REQUEST = "request"
    CHANGE = "change"
    PROBLEM = "problem"
    TASK = "task"
    ONBOARDING = "onboarding"


class TicketStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


PRIORITIES = ("P1", "P2", "P3", "P4")


class Ticket(BaseModel):
    """A ticket as the store keeps it."""

    id: int
    title: str
    description: str = ""
    type: str = TicketType.INCIDENT.value
    priority: str = "P3"
    status: str = TicketStatus.OPEN.value
    category: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    source: str = "manual"
    external_key: str | None = None
    created_at: datetime
    updated_at: datetime


class Execution(BaseModel):
    """An execution as the store keeps it; params carry no secret values."""

    id: int
    runbook: str
    version: int
    status: ExecutionStatus
    params: dict[str, Any] = Field(default_factory=dict)
    secret_params: list[str] = Field(default_factory=list)
    """Params whose values were never stored: the runbook's secrets, and a child's
    params that carried one of its parent's secrets."""
    trigger: str = "manual"
    ticket_id: int | None = None
    operator: str
    parent_id: int | None = None
    parent_step: str | None = None
    owner_id: str | None = None
    current_step: str | None = None
    reason: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class StepRun(BaseModel):
    """The state of one step (or one host of a fan-out step) in one execution."""

    execution_id: int
    step_id: str
    host: str = ""
    """Empty for the step itself; a host name for one host of an SSH fan-out."""
    status: StepStatus = StepStatus.PENDING
    reason: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    attempts: int = 0
    outputs: dict[str, Any] = Field(default_factory=dict)
    output_file: str | None = None
    output_bytes: int = 0
    output_truncated: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
