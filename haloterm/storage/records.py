"""Records the store returns besides the shared models in :mod:`haloterm.models`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from haloterm.models import Runbook, Ticket

TicketSort = Literal["updated_at", "created_at", "priority", "id"]
ApprovalStatus = Literal["waiting", "approved", "rejected", "timed_out", "cancelled"]
Decision = Literal["approved", "rejected", "timed_out"]


class TicketEvent(BaseModel):
    """One entry of a ticket's history (and of the automation queue)."""

    id: int
    ticket_id: int
    kind: str
    """``created``, ``updated``, ``status_changed``, ``priority_changed`` or ``note``;
    other parts of haloterm may add kinds (``resolved`` from alert intake)."""
    data: dict[str, Any] = Field(default_factory=dict)
    actor: str
    at: datetime


class TicketCursor(BaseModel):
    """Where the next page of a ticket query starts (keyset paging)."""

    model_config = ConfigDict(frozen=True)

    value: str | int | None
    """The sort column's value of the last row shown."""
    id: int
    """The id of the last row shown; breaks ties between equal sort values."""


class TicketQuery(BaseModel):
    """Filters, sort order and page of the ticket list."""

    model_config = ConfigDict(frozen=True)

    text: str = ""
    """Free text: every word must appear in the title (case-insensitive)."""
    priority: list[str] | None = None
    status: list[str] | None = None
    type: list[str] | None = None
    category: list[str] | None = None
    sort: TicketSort = "updated_at"
    descending: bool = True
    """Newest first for times, highest id first; for ``priority`` it means most
    urgent (P1) first."""
    limit: int = Field(default=100, ge=1, le=10_000)
    after: TicketCursor | None = None

    def filter_key(self) -> tuple[Any, ...]:
        """The part of the query that decides which rows match (not their order)."""

        def norm(values: list[str] | None) -> tuple[str, ...] | None:
            return None if values is None else tuple(sorted(values))

        return (
            self.text.strip().lower(),
            norm(self.priority),
            norm(self.status),
            norm(self.type),
            norm(self.category),
        )


class TicketPage(BaseModel):
    """One page of tickets and the cursor of the next one (None on the last page)."""

    rows: list[Ticket]
    next_cursor: TicketCursor | None = None


class SavedVersion(BaseModel):
    """What :meth:`Store.save_runbook` did."""

    name: str
    version: int
    created: bool
    """False when the content matched the latest version and nothing was stored."""
    content_hash: str


class StoredRunbook(BaseModel):
    """One stored version of a runbook."""

    name: str
    version: int
    runbook: Runbook
    source_text: str
    content_hash: str
    author: str
    created_at: datetime


class RunbookSummary(BaseModel):
    """A line of the runbook list."""

    name: str
    title: str
    tags: list[str] = Field(default_factory=list)
    latest_version: int
    enabled: bool = True
    last_status: str | None = None
    last_run_at: datetime | None = None
    runs: int = 0
    success_rate: float | None = None
    """Succeeded runs over finished runs; None before the first finished run."""


class ApprovalDecision(BaseModel):
    """One approver's answer."""

    by: str
    decision: Decision
    at: datetime
    comment: str | None = None


class Approval(BaseModel):
    """An approval step's request and the decisions on it."""

    execution_id: int
    step_id: str
    status: ApprovalStatus
    approvers: list[str]
    """Users and ``role:<name>`` groups that may decide."""
    message: str = ""
    deadline: datetime | None = None
    min_approvals: int = 1
    allow_self_approval: bool = False
    requested_by: str
    requested_at: datetime
    decisions: list[ApprovalDecision] = Field(default_factory=list)
    decided_by: str | None = None
    """Who settled it: the rejecter, or the approver who reached the quorum."""
    decided_at: datetime | None = None
    comment: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)
    """What the approver is shown besides the message: ``next`` (the steps that run
    after it, with their masked inputs) and ``params`` (masked)."""
    params_hash: str | None = None
    """SHA-256 of the summary as shown, recorded with every decision."""
    on_timeout: str = "reject"
    escalate_to: list[str] = Field(default_factory=list)
    escalated: bool = False
    timeout_seconds: float | None = None
    reminded_at: datetime | None = None

    def timed_out_at(self, now: datetime) -> bool:
        """Whether the deadline has passed (no click counts any more)."""
        return self.deadline is not None and now >= self.deadline

    @property
    def deciders(self) -> list[str]:
        """Everyone whose answer settled it: every approver of an approved request,
        else the one who decided."""
        if self.status == "approved":
            return [d.by for d in self.decisions if d.decision == "approved"]
        return [] if self.decided_by is None else [self.decided_by]


class AuditRecord(BaseModel):
    """One entry of the append-only audit trail."""

    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    detail: dict[str, Any] = Field(default_factory=dict)
    origin: str | None = None


class SeedReport(BaseModel):
    """What :func:`haloterm.storage.seed.seed_if_empty` imported."""

    seeded: bool
    runbooks: list[str] = Field(default_factory=list)
    tickets: int = 0
    skipped: list[str] = Field(default_factory=list)
    """Files that failed to load, with the reason."""
