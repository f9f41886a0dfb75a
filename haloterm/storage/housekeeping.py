"""Keeping a store healthy while it runs: backups, log retention and WAL checkpoints.

All three work on a live store that other processes keep writing to. A backup uses
SQLite's online backup API from its own connection, in one step, so the copy is one
consistent snapshot. A purge deletes old log lines (and, when asked, old audit
records through the one recorded path the append-only triggers allow) in one
``BEGIN IMMEDIATE`` transaction of the store's writer. A checkpoint is PASSIVE: it
copies what it can from the WAL without waiting on readers or writers.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from haloterm.storage.clock import to_text
from haloterm.storage.core import connect
from haloterm.storage.errors import StoreError
from haloterm.storage.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackupReport:
    """What :func:`backup` wrote."""

    path: Path
    bytes: int
    pages: int
    integrity: str


@dataclass(frozen=True)
class PurgeReport:
    """What :func:`purge` removed."""

    cutoff: str
    executions: int
    log_lines: int
    spool_files: int
    audit_records: int


@dataclass(frozen=True)
class CheckpointReport:
    """The result of ``PRAGMA wal_checkpoint(PASSIVE)``."""

    busy: bool
    wal_pages: int
    checkpointed: int


def backup(store: Store, dest: Path) -> BackupReport:
    """Copy the live store to ``dest`` as one consistent snapshot, then check it.

    Args:
        store: the open store; other processes may keep writing during the copy.
        dest: the new file; it must not exist yet.

    Returns:
        The copy's size, page count and ``PRAGMA integrity_check`` result.

    Raises:
        StoreError: ``dest`` exists, or the copy failed (the partial file is
            removed).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Created here, exclusively and for its owner only: a copy of the store
        # holds what the store holds.
        os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        raise StoreError(f"{dest}: already exists; choose a new backup file") from None
    except OSError as exc:
        raise StoreError(f"{dest}: cannot create the backup: {exc.strerror}") from None
    source = connect(store.path, busy_timeout=10.0, query_only=True)
    try:
        target = sqlite3.connect(str(dest))
        try:
            # pages=-1 copies everything in one step under one read transaction,
            # so concurrent commits cannot make the copy mix two states.
            source.backup(target, pages=-1)
            target.execute("PRAGMA journal_mode = DELETE")
            pages = int(target.execute("PRAGMA page_count").fetchone()[0])
            check = str(target.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            target.close()
    except sqlite3.Error as exc:
        dest.unlink(missing_ok=True)
        raise StoreError(f"{store.path}: backup to {dest} failed: {exc}") from None
    finally:
        source.close()
    size = dest.stat().st_size
    logger.info("backup of %s written to %s (%d bytes)", store.path, dest, size)
    return BackupReport(dest, size, pages, check)


def purge(
    store: Store,
    *,
    older_than: float,
    actor: str,
    include_audit: bool = False,
    spool_dir: Path | None = None,
) -> PurgeReport:
    """Delete the logs of executions that finished more than ``older_than`` ago.

    Executions and their step records stay (history and reports keep working);
    their stored log lines and spool files go. The audit trail is kept unless
    ``include_audit``: then records older than the cutoff are deleted through a
    recorded purge (a row in ``audit_purges`` opens the append-only trigger for
    that transaction only). Either way the purge itself is audited.

    Args:
        store: the open store.
        older_than: seconds; executions finished before now minus this lose logs.
        actor: who purges (audited).
        include_audit: also delete audit records older than the cutoff.
        spool_dir: where step output files live; those of purged runs are removed.

    Returns:
        How much was removed.
    """
    if older_than <= 0:
        raise ValueError("older_than must be positive")
    now = store.now()
    cutoff = to_text(now - timedelta(seconds=older_than))

    def work(conn: sqlite3.Connection) -> tuple[list[int], list[str], int, int]:
        rows = conn.execute(
            "SELECT id FROM executions WHERE finished_at IS NOT NULL"
            " AND finished_at < ? AND status NOT IN ('queued', 'running', 'waiting')",
            (cutoff,),
        ).fetchall()
        ids = [int(row[0]) for row in rows]
        files: list[str] = []
        lines = 0
        for execution_id in ids:
            lines += conn.execute(
                "DELETE FROM log_lines WHERE execution_id = ?", (execution_id,)
            ).rowcount
            files += [
                str(r[0])
                for r in conn.execute(
                    "SELECT output_file FROM step_runs WHERE execution_id = ?"
                    " AND output_file IS NOT NULL",
                    (execution_id,),
                ).fetchall()
            ]
        audits = _purge_audit(conn, actor, cutoff, to_text(now)) if include_audit else 0
        detail = {"cutoff": cutoff, "executions": len(ids), "log_lines": lines}
        detail |= {"include_audit": include_audit, "audit_records": audits}
        store._audit(conn, actor, "store.purge", "store", str(store.path), detail)
        return ids, files, lines, audits

    ids, files, lines, audits = store.write(work)
    removed = _remove_spools(files, spool_dir)
    logger.info(
        "purged logs of %d executions (%d lines, %d files) and %d audit records",
        len(ids),
        lines,
        removed,
        audits,
    )
    return PurgeReport(cutoff, len(ids), lines, removed, audits)


def _purge_audit(conn: sqlite3.Connection, actor: str, cutoff: str, now: str) -> int:
    cursor = conn.execute(
        "INSERT INTO audit_purges (at, actor, cutoff, open) VALUES (?, ?, ?, 1)",
        (now, actor, cutoff),
    )
    purge_id = cursor.lastrowid
    deleted = conn.execute("DELETE FROM audit WHERE at < ?", (cutoff,)).rowcount
    conn.execute(
        "UPDATE audit_purges SET open = 0, rows = ? WHERE id = ?", (deleted, purge_id)
    )
    return int(deleted)


def _remove_spools(files: list[str], spool_dir: Path | None) -> int:
    removed = 0
    for name in files:
        path = Path(name)
        # Only files inside the spool directory: a stored path is never trusted
        # to point anywhere else.
        if spool_dir is None or path.parent.resolve() != spool_dir.resolve():
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("could not remove %s: %s", path, exc)
            continue
        removed += 1
    return removed


def checkpoint(store: Store) -> CheckpointReport:
    """Run a PASSIVE WAL checkpoint on a connection of its own.

    It never waits for other connections, so it is safe in a heartbeat loop; the
    WAL is then reused from its start once every reader has moved on.
    """
    conn = connect(store.path, busy_timeout=1.0, query_only=False)
    try:
        busy, wal, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    logger.debug("checkpoint of %s: %s of %s WAL pages", store.path, done, wal)
    return CheckpointReport(bool(busy), int(wal), int(done))
