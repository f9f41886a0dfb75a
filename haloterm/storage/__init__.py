"""The SQLite store: schema, migrations, the writer thread and every query."""

from __future__ import annotations

from haloterm.storage.clock import utc_now
from haloterm.storage.errors import ApprovalRefused, NotFoundError, StoreError
from haloterm.storage.records import (
    Approval,
    ApprovalDecision,
    AuditRecord,
    RunbookSummary,
    SavedVersion,
    SeedReport,
    StoredRunbook,
    TicketCursor,
    TicketEvent,
    TicketPage,
    TicketQuery,
)
from haloterm.storage.schema import SCHEMA_VERSION
from haloterm.storage.store import Store
from haloterm.storage.tickets import parse_ticket_filter

__all__ = [
    "SCHEMA_VERSION",
    "Approval",
    "ApprovalDecision",
    "ApprovalRefused",
    "AuditRecord",
    "NotFoundError",
    "RunbookSummary",
    "SavedVersion",
    "SeedReport",
    "Store",
    "StoreError",
    "StoredRunbook",
    "TicketCursor",
    "TicketEvent",
    "TicketPage",
    "TicketQuery",
    "parse_ticket_filter",
    "utc_now",
]
