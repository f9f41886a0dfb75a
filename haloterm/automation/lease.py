"""The automation lease: one process at a time runs rules and schedules.

The holder renews the lease every couple of seconds; a lease not renewed for its
TTL (at most 10 s) is free, and on this host a holder whose pid is gone is dead at
once. Other processes can read who holds it (:meth:`Store.lease_holder`) and show
"automation runs in another session (pid …)".
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from haloterm.storage import Store
    from haloterm.storage.automation import LeaseHolder

logger = logging.getLogger(__name__)

LEASE_TTL = 10.0
"""Seconds a lease lasts without renewal."""
RENEW_SECONDS = 2.0
"""How often the holder renews (and others try to take it)."""


class Lease:
    """This process's side of the automation lease.

    Args:
        store: the store.
        holder: this process's id (its owner id).
        user: the operator running this process.
        ttl: seconds the lease lasts without renewal (at most 10).
    """

    def __init__(
        self, store: Store, holder: str, *, user: str, ttl: float = LEASE_TTL
    ) -> None:
        if not 0 < ttl <= LEASE_TTL:
            raise ValueError(f"lease TTL must be in (0, {LEASE_TTL:g}] seconds")
        self.store = store
        self.holder = holder
        self.user = user
        self.ttl = ttl
        self.held = False
        """Whether this process held the lease at the last :meth:`refresh`."""

    def refresh(self) -> tuple[bool, bool]:
        """Renew the lease if held, else try to take it (blocking; use a thread).

        Returns:
            (held now, changed since the last refresh).
        """
        was = self.held
        if was:
            held = self.store.renew_lease(self.holder, self.ttl)
            if not held:
                logger.warning("automation lease lost by %s", self.holder)
        else:
            held = self.store.acquire_lease(
                self.holder,
                pid=os.getpid(),
                hostname=socket.gethostname(),
                user=self.user,
                ttl=self.ttl,
            )
            if held:
                logger.info("automation lease taken by %s", self.holder)
        self.held = held
        return held, held != was

    def release(self) -> None:
        """Give the lease up so another process takes it at once."""
        if self.held:
            self.store.release_lease(self.holder)
            self.held = False
            logger.info("automation lease released by %s", self.holder)

    def other_holder(self) -> LeaseHolder | None:
        """The live holder when it is another process, else None."""
        holder = self.store.lease_holder()
        if holder is None or holder.holder == self.holder or not holder.alive:
            return None
        return holder
