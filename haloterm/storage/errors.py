"""Errors the store raises."""

from __future__ import annotations

from datetime import datetime


class StoreError(Exception):
    """The store cannot do what was asked; the message names the database file."""


class NotFoundError(StoreError, LookupError):
    """The ticket, execution or approval asked for does not exist."""


class ApprovalRefused(StoreError):
    """A decision on an approval was refused.

    Attributes:
        reason: why, in words an operator can read (``already approved by bob``).
        decided_by: who decided the approval already, if anyone did.
        decided_at: when it was decided, if it was.
    """

    def __init__(
        self,
        reason: str,
        decided_by: str | None = None,
        decided_at: datetime | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decided_by = decided_by
        self.decided_at = decided_at
