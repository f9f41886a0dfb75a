"""The :class:`Store`: one SQLite file shared by every haloterm process of a shift."""

from __future__ import annotations

from haloterm.storage.approvals import ApprovalStore
from haloterm.storage.automation import AutomationStore
from haloterm.storage.executions import ExecutionStore
from haloterm.storage.owners import OwnerStore
from haloterm.storage.recovery import RecoveryStore
from haloterm.storage.runbooks import RunbookStore
from haloterm.storage.tickets import TicketStore


class Store(
    TicketStore,
    RunbookStore,
    ExecutionStore,
    OwnerStore,
    RecoveryStore,
    ApprovalStore,
    AutomationStore,
):
    """haloterm's store: tickets, runbooks, executions, approvals and the audit.

    Open it with :meth:`Store.open` and close it (or use it as a context manager).
    Reads run on per-thread read-only connections and may be called from any
    thread; writes are queued to one writer thread and committed in
    ``BEGIN IMMEDIATE`` transactions. From an event loop, call blocking methods
    through :meth:`call`, or await :meth:`submit` futures with
    ``asyncio.wrap_future``.
    """
