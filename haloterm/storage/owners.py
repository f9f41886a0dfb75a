"""The processes that run executions: heartbeats, and what happens when one dies."""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
from datetime import timedelta

from haloterm.storage.clock import to_text
from haloterm.storage.core import Row, StoreCore

logger = logging.getLogger(__name__)


class OwnerStore(StoreCore):
    """Owner methods of :class:`haloterm.storage.Store`."""

    def register_owner(
        self, owner_id: str, *, pid: int, hostname: str, user: str
    ) -> None:
        """Record a process that runs executions (heartbeat starts now)."""
        now = self._now_text()

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO owners (id, pid, hostname, user, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " pid = excluded.pid, hostname = excluded.hostname,"
                " user = excluded.user, heartbeat_at = excluded.heartbeat_at",
                (owner_id, pid, hostname, user, now, now),
            )

        self.write(upsert)

    def heartbeat(self, owner_id: str) -> bool:
        """Refresh an owner's heartbeat.

        Returns:
            False when the owner's row is gone (another process declared it dead).
        """
        now = self._now_text()

        def touch(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE owners SET heartbeat_at = ? WHERE id = ?", (now, owner_id)
            )
            return cursor.rowcount > 0

        alive = self.write(touch)
        if not alive:
            logger.warning(
                "owner %s has no row any more; its runs were interrupted", owner_id
            )
        return alive

    def remove_owner(self, owner_id: str) -> None:
        """Forget an owner (at a clean shutdown)."""
        self.write(
            lambda conn: conn.execute("DELETE FROM owners WHERE id = ?", (owner_id,))
        )

    def live_owner_ids(self, ttl: float = 10.0) -> set[str]:
        """Owners whose heartbeat is younger than ``ttl`` seconds."""
        cutoff = to_text(self.now() - timedelta(seconds=ttl))
        rows = self._rows("SELECT id FROM owners WHERE heartbeat_at >= ?", (cutoff,))
        return {str(row["id"]) for row in rows}

    def interrupt_dead_owners(self, ttl: float, *, actor: str) -> list[int]:
        """Mark the unfinished executions of dead owners ``interrupted``.

        An owner on this host is dead when its process no longer exists; an owner
        on another host when its heartbeat is older than ``ttl`` seconds. Its
        running step runs fail with reason ``interrupted``, and the process
        groups its steps left on this host are killed. A run waiting for an
        approval needs no process: it stays ``waiting``, with no owner, for
        whoever decides (or the automation lease holder) to continue. The dead
        owner's row is removed.

        Returns:
            The ids of the executions interrupted.
        """
        now = self.now()
        cutoff = to_text(now - timedelta(seconds=ttl))
        here = socket.gethostname()

        from haloterm.storage.recovery import (
            StepProcess,
            stop_process_groups,
            take_processes,
        )

        leftovers: list[StepProcess] = []

        def sweep(conn: sqlite3.Connection) -> list[int]:
            interrupted: list[int] = []
            leftovers.clear()
            for owner in conn.execute("SELECT * FROM owners").fetchall():
                if owner["hostname"] == here:
                    # A process of this host is dead the moment its pid is gone;
                    # no need to wait out the heartbeat.
                    dead = not pid_alive(owner["pid"])
                else:
                    dead = owner["heartbeat_at"] < cutoff
                if dead:
                    ids = self._interrupt_owner(conn, owner, actor, to_text(now))
                    leftovers.extend(take_processes(conn, ids))
                    interrupted += ids
            return interrupted

        ids = self.write(sweep)
        if ids:
            logger.warning("interrupted executions of stopped owners: %s", ids)
        stop_process_groups(leftovers)
        return ids

    def _interrupt_owner(
        self, conn: sqlite3.Connection, owner: Row, actor: str, now: str
    ) -> list[int]:
        reason = f"owner process {owner['pid']} on {owner['hostname']} stopped"
        conn.execute(
            "UPDATE executions SET owner_id = NULL WHERE owner_id = ?"
            " AND status = 'waiting'",
            (owner["id"],),
        )
        rows = conn.execute(
            "SELECT id FROM executions WHERE owner_id = ?"
            " AND status IN ('queued', 'running') ORDER BY id",
            (owner["id"],),
        ).fetchall()
        ids = [int(row["id"]) for row in rows]
        for execution_id in ids:
            conn.execute(
                "UPDATE executions SET status = 'interrupted', reason = ?,"
                " finished_at = ? WHERE id = ?",
                (reason, now, execution_id),
            )
            conn.execute(
                "UPDATE step_runs SET status = 'failed', reason = 'interrupted',"
                " finished_at = ? WHERE execution_id = ?"
                " AND status IN ('running', 'waiting')",
                (now, execution_id),
            )
            _past_finished_step(conn, execution_id)
            detail = {"owner": owner["id"], "reason": reason}
            self._audit(
                conn, actor, "execution.interrupt", "execution", execution_id, detail
            )
        conn.execute("DELETE FROM owners WHERE id = ?", (owner["id"],))
        return ids


def _past_finished_step(conn: sqlite3.Connection, execution_id: int) -> None:
    """Point an interrupted run at the step after its current one when that one
    had already passed or been skipped (the owner died between the two commits):
    a resume must not run a finished step again."""
    row = conn.execute(
        "SELECT s.rowid, s.status FROM executions e JOIN step_runs s"
        " ON s.execution_id = e.id AND s.step_id = e.current_step AND s.host = ''"
        " WHERE e.id = ?",
        (execution_id,),
    ).fetchone()
    if row is None or row["status"] not in ("passed", "skipped"):
        return
    following = conn.execute(
        "SELECT step_id FROM step_runs WHERE execution_id = ? AND host = ''"
        " AND rowid > ? ORDER BY rowid LIMIT 1",
        (execution_id, row["rowid"]),
    ).fetchone()
    if following is not None:
        conn.execute(
            "UPDATE executions SET current_step = ? WHERE id = ?",
            (following["step_id"], execution_id),
        )


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
