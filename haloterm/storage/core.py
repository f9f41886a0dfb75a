"""The store's machinery: connections, the writer, reads, the clock and the audit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

from sqlite_utils import Database

from haloterm.engine.events import LogLine
from haloterm.storage.clock import parse_time, to_text, utc_now
from haloterm.storage.errors import StoreError
from haloterm.storage.records import AuditRecord
from haloterm.storage.schema import migrate
from haloterm.storage.writer import Writer

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")
Clock = Callable[[], datetime]
Row = sqlite3.Row


def dumps(value: Any) -> str:
    """JSON text for a JSON column (non-JSON values become their string form)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def loads(text: str | None, default: Any) -> Any:
    """Parse a JSON column; NULL gives ``default``."""
    return default if text is None else json.loads(text)


def connect(path: Path, *, busy_timeout: float, query_only: bool) -> sqlite3.Connection:
    """Open one connection with the store's settings."""
    conn = sqlite3.connect(
        str(path),
        isolation_level=None,
        check_same_thread=False,
        timeout=busy_timeout,
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    if query_only:
        conn.execute("PRAGMA query_only = 1")
    else:
        # A bigger page cache for the one writer keeps index pages hot.
        conn.execute("PRAGMA cache_size = -8000")
    return conn


class StoreCore:
    """Connections, the writer thread, reads and the audit trail.

    Use :meth:`open`; the public :class:`haloterm.storage.Store` adds the queries.
    """

    def __init__(
        self,
        path: Path,
        db: Database,
        *,
        clock: Clock,
        busy_timeout: float,
        writer: Writer,
    ) -> None:
        self.path = path
        """The database file."""
        self._db = db
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._writer = writer
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._version_conn = connect(path, busy_timeout=busy_timeout, query_only=True)
        self._version_lock = threading.Lock()
        self._closed = False
        self._count_cache: dict[tuple[Any, ...], int] = {}
        self._count_lock = threading.Lock()
        self.origin = f"{socket.gethostname()}:{os.getpid()}"
        """Recorded in audit rows written without an explicit origin."""

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        clock: Clock = utc_now,
        busy_timeout: float = 10.0,
        batch_interval: float = 0.025,
        batch_lines: int = 2000,
        busy_retry_for: float = 300.0,
    ) -> Self:
        """Open (creating and migrating when needed) the store at ``path``.

        Args:
            path: the SQLite file; missing parent directories are created.
            clock: where every timestamp the store writes comes from.
            busy_timeout: seconds a connection waits for another's lock.
            batch_interval: seconds log lines may wait to join a batch.
            batch_lines: log lines that make a batch on their own.
            busy_retry_for: seconds a busy database is retried before writes fail.

        Raises:
            StoreError: the file cannot be opened, is not a haloterm store, or was
                written by a newer haloterm.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A new store is its owner's alone (SQLite gives its -wal and -shm files
            # the same mode); an administrator can open a shared one up on purpose.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            conn = connect(path, busy_timeout=busy_timeout, query_only=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the store: {exc}") from None
        try:
            db = Database(conn)
            if db.journal_mode != "wal":
                db.enable_wal()
            migrate(db, path, clock)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{path}: cannot open the store: {exc}") from None
        writer = Writer(
            conn,
            path,
            batch_interval=batch_interval,
            batch_lines=batch_lines,
            busy_retry_for=busy_retry_for,
        )
        logger.info("store opened: %s", path)
        return cls(path, db, clock=clock, busy_timeout=busy_timeout, writer=writer)

    def close(self) -> None:
        """Write everything queued, stop the writer and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        self._db.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._version_lock:
            self._version_conn.close()
        logger.info("store closed: %s", self.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ writes

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in the writer's transaction and wait for the commit.

        Args:
            fn: the work; it must not commit, roll back or keep the connection.

        Returns:
            What ``fn`` returned, once its transaction is committed.

        Raises:
            StoreError: the store is closed, or the write could not be committed.
            Exception: whatever ``fn`` raised (its changes are rolled back).
        """
        return self.submit(fn).result()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue ``fn(conn)`` for the writer without waiting.

        Returns:
            A future resolved after the commit; an event loop awaits it through
            ``asyncio.wrap_future``.
        """
        self._check_open()
        return self._writer.submit(fn)

    async def call(self, fn: Callable[P, T], *args: P.args, **kw: P.kwargs) -> T:
        """Run any blocking store method in a worker thread, off the event loop."""
        return await asyncio.to_thread(fn, *args, **kw)

    def append_logs(self, lines: Sequence[LogLine]) -> None:
        """Queue log lines; they are committed with the writer's next batch."""
        self._check_open()
        self._writer.append(lines)

    def flush(self) -> None:
        """Block until everything queued before this call is committed."""
        self.write(_nothing)

    @property
    def lines_written(self) -> int:
        """Log lines this store object has committed."""
        return self._writer.lines_written

    # ------------------------------------------------------------------ reads

    def data_version(self) -> int:
        """A number that changes whenever any connection commits to the file.

        Cheap enough to poll a few times a second to notice other processes' writes.
        """
        self._check_open()
        with self._version_lock:
            row = self._version_conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def now(self) -> datetime:
        """The store's clock."""
        return self._clock()

    def _now_text(self) -> str:
        return to_text(self._clock())

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self._check_open()
            conn = connect(self.path, busy_timeout=self._busy_timeout, query_only=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._check_open()
        return list(self._reader().execute(sql, params).fetchall())

    def _row(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._check_open()
        row: Row | None = self._reader().execute(sql, params).fetchone()
        return row

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: the store is closed")

    # ------------------------------------------------------------------ audit

    def audit(
        self,
        *,
        actor: str,
        action: str,
        target_type: str,
        target_id: str | int,
        detail: dict[str, Any] | None = None,
        origin: str | None = None,
    ) -> int:
        """Append one record to the audit trail.

        Args:
            actor: who did it (an operator, or ``system``).
            action: what was done, dotted (``ticket.update``, ``approval.approved``).
            target_type: the kind of thing acted on (``ticket``, ``execution``).
            target_id: which one.
            detail: JSON-serialisable facts; never secret values.
            origin: where it came from; defaults to this host and process.

        Returns:
            The new record's id.
        """

        def insert(conn: sqlite3.Connection) -> int:
            return self._audit(
                conn, actor, action, target_type, target_id, detail, origin
            )

        return self.write(insert)

    def _audit(
        self,
        conn: sqlite3.Connection,
        actor: str,
        action: str,
        target_type: str,
        target_id: str | int,
        detail: dict[str, Any] | None = None,
        origin: str | None = None,
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO audit (at, actor, action, target_type, target_id, detail,"
            " origin) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self._now_text(),
                actor,
                action,
                target_type,
                str(target_id),
                dumps(detail or {}),
                origin or self.origin,
            ),
        )
        return int(cursor.lastrowid or 0)

    def list_audit(
        self,
        *,
        limit: int = 1000,
        before_id: int | None = None,
        target_type: str | None = None,
        target_id: str | int | None = None,
    ) -> list[AuditRecord]:
        """Audit records, newest first, optionally for one target.

        Args:
            limit: at most this many.
            before_id: only records older than this id (the next page).
            target_type: only records about this kind of thing.
            target_id: only records about this one thing.
        """
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        if target_type is not None:
            where.append("target_type = ?")
            params.append(target_type)
        if target_id is not None:
            where.append("target_id = ?")
            params.append(str(target_id))
        sql = (
            f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        )
        rows = self._rows(sql, [*params, limit])
        return [_audit_record(row) for row in rows]


def _nothing(conn: sqlite3.Connection) -> None:
    return None


def _audit_record(row: Row) -> AuditRecord:
    return AuditRecord(
        id=row["id"],
        at=parse_time(row["at"]),
        actor=row["actor"],
        action=row["action"],
        target_type=row["target_type"],
        target_id=row["target_id"],
        detail=loads(row["detail"], {}),
        origin=row["origin"],
    )
