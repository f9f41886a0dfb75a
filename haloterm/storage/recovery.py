"""Taking over executions safely, and the local processes a dead owner left behind.

Several processes may try to continue the same execution at once (the console that
approved it, the automation lease holder, an operator's ``haloterm resume``);
:meth:`RecoveryStore.claim_execution` lets exactly one of them win. Each running
shell step records its process group here, so that when its owner dies the group
can be stopped on the same host, checked against the process start time so a
reused pid is never signalled.
"""

from __future__ import annotations

import logging
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from haloterm.models import Execution
from haloterm.procgroups import (
    group_members_alive,
    process_start_ticks,
    signal_group,
)
from haloterm.storage.clock import to_text
from haloterm.storage.core import Row, StoreCore
from haloterm.storage.executions import _execution
from haloterm.storage.owners import pid_alive

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepProcess:
    """A local process group started by a step."""

    execution_id: int
    step_id: str
    hostname: str
    pid: int
    pgid: int
    start_ticks: int | None


KILL_GRACE = 5.0
"""Seconds a left-behind process group has between SIGTERM and SIGKILL."""


def stop_process_groups(
    processes: Iterable[StepProcess],
    *,
    grace: float = KILL_GRACE,
    wait: bool = False,
) -> list[int]:
    """Stop the process groups of steps whose owner died, on this host only.

    Each group gets SIGTERM, so a command can clean up (remove a lock file,
    roll back a half-done change), and SIGKILL if anything of it still runs
    ``grace`` seconds later. The wait happens in a thread of its own, so the
    store's writer is never held; the thread is not a daemon, so even a short
    command finishes it before exiting.

    A group whose leader runs with another start time than recorded is a reused
    pid and is left alone. A group whose leader has exited may still have members
    (a background child); the kernel does not reuse a group id while any member
    lives, so those are stopped too.

    Args:
        processes: the groups recorded for the dead owner's steps.
        grace: seconds between SIGTERM and SIGKILL.
        wait: wait for the groups to end here instead of in a thread.

    Returns:
        The group ids signalled.
    """
    here = socket.gethostname()
    signalled: list[StepProcess] = []
    for proc in processes:
        if proc.hostname != here:
            continue
        ticks = process_start_ticks(proc.pid)
        if (
            ticks is not None
            and proc.start_ticks is not None
            and ticks != proc.start_ticks
        ):
            logger.info("pid %d was reused; not signalling it", proc.pid)
            continue
        if signal_group(proc.pgid, signal.SIGTERM):
            logger.warning(
                "stopping process group %d left by step %s of execution %s",
                proc.pgid,
                proc.step_id,
                proc.execution_id,
            )
            signalled.append(proc)
    if signalled:
        groups = [proc.pgid for proc in signalled]
        if wait:
            _kill_survivors(groups, grace)
        else:
            threading.Thread(
                target=_kill_survivors,
                args=(groups, grace),
                name="haloterm-stop-groups",
            ).start()
    return [proc.pgid for proc in signalled]


def _kill_survivors(groups: list[int], grace: float) -> None:
    """SIGKILL whichever of the groups still has a running member after ``grace``."""
    deadline = time.monotonic() + grace
    alive = list(groups)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pgid for pgid in alive if group_members_alive(pgid)]
    for pgid in alive:
        if signal_group(pgid, signal.SIGKILL):
            logger.warning(
                "process group %d ignored SIGTERM for %.0f s; killed", pgid, grace
            )


def owner_alive(owner: Row | Mapping[str, Any] | None, *, cutoff: str) -> bool:
    """Whether an owner row belongs to a process that still runs."""
    if owner is None:
        return False
    if owner["hostname"] == socket.gethostname():
        return pid_alive(owner["pid"])
    return bool(owner["heartbeat_at"] >= cutoff)


class RecoveryStore(StoreCore):
    """Claim and process-tracking methods of :class:`haloterm.storage.Store`."""

    def request_cancel(
        self, execution_id: int, *, actor: str, reason: str | None = None
    ) -> None:
        """Ask the process that owns a run to cancel it (it polls for requests)."""

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO cancel_requests"
                " (execution_id, actor, reason, requested_at) VALUES (?, ?, ?, ?)",
                (execution_id, actor, reason, self._now_text()),
            )

        self.write(insert)

    def take_cancel_requests(
        self, execution_ids: Collection[int]
    ) -> list[tuple[int, str, str | None]]:
        """Remove and return the cancel requests for these runs: (id, actor, reason).

        Cheap to call often: it reads first and writes only when there is one.
        """
        ids = list(execution_ids)
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        found = self._rows(
            f"SELECT execution_id FROM cancel_requests WHERE execution_id IN ({marks})",
            ids,
        )
        if not found:
            return []

        def take(conn: sqlite3.Connection) -> list[tuple[int, str, str | None]]:
            rows = conn.execute(
                "SELECT execution_id, actor, reason FROM cancel_requests"
                f" WHERE execution_id IN ({marks})",
                ids,
            ).fetchall()
            conn.execute(
                f"DELETE FROM cancel_requests WHERE execution_id IN ({marks})", ids
            )
            return [(int(r[0]), str(r[1]), r[2]) for r in rows]

        return self.write(take)

    def close_approvals(self, execution_id: int, *, actor: str, reason: str) -> int:
        """Mark a run's waiting approvals ``cancelled`` (the run ended without them).

        Returns:
            How many were closed; each is audited.
        """

        def close(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT step_id FROM approvals WHERE execution_id = ?"
                " AND status = 'waiting'",
                (execution_id,),
            ).fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE approvals SET status = 'cancelled', decided_by = ?,"
                    " decided_at = ?, comment = ? WHERE execution_id = ?"
                    " AND step_id = ? AND status = 'waiting'",
                    (actor, self._now_text(), reason, execution_id, row[0]),
                )
                self._audit(
                    conn,
                    actor,
                    "approval.cancelled",
                    "execution",
                    execution_id,
                    {"step": row[0], "reason": reason},
                )
            return len(rows)

        return self.write(close)

    def claim_execution(
        self,
        execution_id: int,
        *,
        owner_id: str | None,
        statuses: Collection[str],
        ttl: float = 10.0,
    ) -> Execution | None:
        """Become the owner of an execution no live process runs (compare-and-set).

        The execution must have one of ``statuses`` and no live owner other than
        ``owner_id``. It is then ``running``, owned by ``owner_id``, with no
        reason or finish time.

        Returns:
            The claimed execution, or None when it is not in one of ``statuses``
            or another live process owns it.
        """
        cutoff = to_text(self.now() - timedelta(seconds=ttl))

        def claim(conn: sqlite3.Connection) -> Execution | None:
            row = conn.execute(
                "SELECT * FROM executions WHERE id = ?", (execution_id,)
            ).fetchone()
            if row is None or row["status"] not in statuses:
                return None
            current = row["owner_id"]
            if current is not None and current != owner_id:
                owner = conn.execute(
                    "SELECT * FROM owners WHERE id = ?", (current,)
                ).fetchone()
                if owner_alive(owner, cutoff=cutoff):
                    return None
            conn.execute(
                "UPDATE executions SET owner_id = ?, status = 'running',"
                " reason = NULL, finished_at = NULL WHERE id = ? AND status = ?",
                (owner_id, execution_id, row["status"]),
            )
            claimed = conn.execute(
                "SELECT * FROM executions WHERE id = ?", (execution_id,)
            ).fetchone()
            return _execution(claimed)

        return self.write(claim)

    def ownerless_waiting(self, ttl: float = 10.0) -> list[Execution]:
        """Waiting executions no live process waits on, oldest first."""
        cutoff = to_text(self.now() - timedelta(seconds=ttl))
        rows = self._rows(
            "SELECT e.*, o.pid AS o_pid, o.hostname AS o_hostname,"
            " o.heartbeat_at AS o_heartbeat_at FROM executions e"
            " LEFT JOIN owners o ON o.id = e.owner_id"
            " WHERE e.status = 'waiting' ORDER BY e.id"
        )
        found = []
        for row in rows:
            owner: dict[str, Any] | None = None
            if row["o_pid"] is not None:
                owner = {
                    "pid": row["o_pid"],
                    "hostname": row["o_hostname"],
                    "heartbeat_at": row["o_heartbeat_at"],
                }
            if not owner_alive(owner, cutoff=cutoff):
                found.append(_execution(row))
        return found

    def interrupted_executions(self, limit: int = 100) -> list[Execution]:
        """Executions whose process died, newest first: every console lists them."""
        rows = self._rows(
            "SELECT * FROM executions WHERE status = 'interrupted'"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [_execution(row) for row in rows]

    def record_process(
        self, execution_id: int, step_id: str, *, pid: int, pgid: int
    ) -> Future[None]:
        """Queue the record of a step's local process group (without waiting).

        Returns:
            A future resolved once it is committed.
        """
        values = (
            execution_id,
            step_id,
            socket.gethostname(),
            pid,
            pgid,
            process_start_ticks(pid),
            self._now_text(),
        )

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO step_processes (execution_id, step_id,"
                " hostname, pid, pgid, start_ticks, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                values,
            )

        return self.submit(insert)

    def forget_process(self, execution_id: int, pid: int) -> Future[None]:
        """Queue the removal of a step process record (it ended, or was stopped)."""
        here = socket.gethostname()

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM step_processes WHERE execution_id = ?"
                " AND hostname = ? AND pid = ?",
                (execution_id, here, pid),
            )

        return self.submit(delete)

    def step_processes(self, execution_id: int | None = None) -> list[StepProcess]:
        """Recorded step processes (of one execution, or all)."""
        sql = "SELECT * FROM step_processes"
        params: tuple[int, ...] = ()
        if execution_id is not None:
            sql += " WHERE execution_id = ?"
            params = (execution_id,)
        return [_process(row) for row in self._rows(sql, params)]


def take_processes(
    conn: sqlite3.Connection, execution_ids: list[int]
) -> list[StepProcess]:
    """Read and delete the process records of executions (inside a write)."""
    found: list[StepProcess] = []
    for execution_id in execution_ids:
        rows = conn.execute(
            "SELECT * FROM step_processes WHERE execution_id = ?", (execution_id,)
        ).fetchall()
        found += [_process(row) for row in rows]
        conn.execute(
            "DELETE FROM step_processes WHERE execution_id = ?", (execution_id,)
        )
    return found


def _process(row: Row) -> StepProcess:
    return StepProcess(
        execution_id=row["execution_id"],
        step_id=row["step_id"],
        hostname=row["hostname"],
        pid=row["pid"],
        pgid=row["pgid"],
        start_ticks=row["start_ticks"],
    )
