"""The one writer thread of a store: a queue of write jobs plus batched log lines.

Every write of a process goes through here, so writes never contend with each other
inside the process, and each batch is one ``BEGIN IMMEDIATE`` transaction: a busy
database makes the writer wait at ``BEGIN`` (where the busy timeout applies) instead
of failing mid-transaction when a read tries to become a write.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from haloterm.engine.events import LogLine
from haloterm.storage.clock import to_text
from haloterm.storage.errors import StoreError

logger = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]

_INSERT_LINE = (
    "INSERT INTO log_lines (execution_id, seq, step_id, host, stream, at, text)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_LINE_OR_IGNORE = _INSERT_LINE.replace("INSERT", "INSERT OR IGNORE", 1)
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_FULL_CODE = 13  # SQLITE_FULL
LineRow = tuple[int, int, str, str, str, str, str]


def is_full(exc: BaseException) -> bool:
    """Whether an error is SQLite's "database or disk is full" (SQLITE_FULL)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return code == _FULL_CODE or "disk is full" in str(exc).lower()


def full_error(path: Path, exc: BaseException) -> StoreError:
    """The error an operator sees when the store cannot grow."""
    return StoreError(
        f"{path}: the disk is full (or the store reached its size limit); "
        f"this write was not kept and nothing stored was damaged ({exc})"
    )


def is_busy(exc: BaseException) -> bool:
    """Whether an error is SQLite's "database is locked/busy" (worth retrying)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc).lower()
    return code in _BUSY_CODES or "locked" in text or "busy" in text


@dataclass
class _Job:
    fn: WriteFn
    future: Future[Any]


class _TransactionLost(Exception):
    """A job ended the transaction itself (``RAISE(ROLLBACK)``, an explicit COMMIT)."""

    def __init__(self, job: _Job, error: BaseException) -> None:
        super().__init__(str(error))
        self.job = job
        self.error = error


class Writer:
    """Runs write jobs and log-line batches on one connection in one thread.

    Args:
        conn: the writer connection (autocommit mode; the writer owns it).
        path: the database file, for messages.
        batch_interval: how long log lines may wait for more to join their batch.
        batch_lines: a batch is written at once when this many lines are waiting.
        max_pending_lines: producers wait when this many lines are queued, so a
            runaway step cannot exhaust memory.
        busy_retry_for: how long a busy database is retried before the batch's
            callers get a :class:`StoreError`.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        batch_interval: float = 0.025,
        batch_lines: int = 2000,
        max_pending_lines: int = 50_000,
        busy_retry_for: float = 300.0,
    ) -> None:
        self._conn = conn
        self._path = path
        self._interval = batch_interval
        self._batch_lines = batch_lines
        self._max_pending = max_pending_lines
        self._busy_retry_for = busy_retry_for
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._lines: list[LogLine] = []
        self._first_line_at = 0.0
        self._stopping = False
        self.lines_written = 0
        """Log lines committed so far."""
        self._thread = threading.Thread(
            target=self._run, name=f"haloterm-store-writer:{path.name}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ callers

    def in_writer(self) -> bool:
        """Whether the calling thread is the writer thread."""
        return threading.get_ident() == self._thread.ident

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue a job; its future resolves once the job's transaction committed."""
        future: Future[T] = Future()
        if self.in_writer():
            self._run_inline(fn, future)
            return future
        with self._cond:
            if self._stopping:
                raise StoreError(f"{self._path}: the store is closed")
            self._jobs.append(_Job(fn, future))
            self._cond.notify_all()
        return future

    def append(self, lines: Sequence[LogLine]) -> None:
        """Queue log lines for the next batch (waits only when far behind)."""
        if not lines:
            return
        with self._cond:
            if self._stopping:
                raise StoreError(f"{self._path}: the store is closed")
            while len(self._lines) >= self._max_pending and not self.in_writer():
                self._cond.wait(0.5)
            before = len(self._lines)
            self._lines.extend(lines)
            if before == 0:
                self._first_line_at = time.monotonic()
                self._cond.notify_all()
            elif before < self._batch_lines <= len(self._lines):
                self._cond.notify_all()

    def stop(self) -> None:
        """Write everything queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if not self.in_writer():
            self._thread.join()

    # ------------------------------------------------------------------ thread

    def _run_inline(
        self, fn: Callable[[sqlite3.Connection], T], future: Future[T]
    ) -> None:
        # A job calling back into the store runs inside the current transaction.
        self._conn.execute("SAVEPOINT inline_job")
        try:
            result = fn(self._conn)
        except Exception as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK TO inline_job")
                self._conn.execute("RELEASE inline_job")
            future.set_exception(exc)
        else:
            self._conn.execute("RELEASE inline_job")
            future.set_result(result)

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            jobs, lines = batch
            try:
                self._commit(jobs, lines)
            except Exception:
                logger.exception("store writer for %s failed a batch", self._path)

    def _take(self) -> tuple[list[_Job], list[LogLine]] | None:
        with self._cond:
            while not (self._jobs or self._stopping):
                if not self._lines:
                    self._cond.wait()
                    continue
                if len(self._lines) >= self._batch_lines:
                    break
                remaining = self._first_line_at + self._interval - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._stopping and not (self._jobs or self._lines):
                return None
            jobs = list(self._jobs)
            self._jobs.clear()
            lines, self._lines = self._lines, []
            self._cond.notify_all()
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        return live, lines

    def _commit(self, jobs: list[_Job], lines: list[LogLine]) -> None:
        rows = _line_rows(lines)
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                outcomes = self._transaction(jobs, rows)
            except _TransactionLost as lost:
                lost.job.future.set_exception(lost.error)
                jobs = [job for job in jobs if job is not lost.job]
                continue
            except Exception as exc:
                if not is_busy(exc):
                    self._fail(jobs, rows, exc)
                    return
                attempt += 1
                waited = time.monotonic() - started
                if waited > self._busy_retry_for:
                    self._fail(jobs, rows, exc)
                    return
                delay = min(0.05 * 2**attempt, 2.0)
                logger.warning(
                    "%s is busy (%s); retrying in %.2fs (attempt %d, %.1fs so far)",
                    self._path,
                    exc,
                    delay,
                    attempt,
                    waited,
                )
                time.sleep(delay)
                continue
            break
        self.lines_written += len(rows)
        for job, ok, value in outcomes:
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _fail(self, jobs: list[_Job], rows: list[LineRow], exc: Exception) -> None:
        logger.error(
            "%s: a write batch failed (%d jobs, %d log lines dropped): %s",
            self._path,
            len(jobs),
            len(rows),
            exc,
        )
        error = (
            full_error(self._path, exc)
            if is_full(exc)
            else StoreError(f"{self._path}: write failed: {exc}")
        )
        for job in jobs:
            job.future.set_exception(error)

    def _transaction(
        self, jobs: list[_Job], rows: list[LineRow]
    ) -> list[tuple[_Job, bool, Any]]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                self._insert_lines(rows)
            outcomes = [self._run_job(job) for job in jobs]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    def _run_job(self, job: _Job) -> tuple[_Job, bool, Any]:
        conn = self._conn
        conn.execute("SAVEPOINT job")
        try:
            value = job.fn(conn)
        except Exception as exc:
            if is_full(exc):
                exc = full_error(self._path, exc)
            if not conn.in_transaction:
                raise _TransactionLost(job, exc) from exc
            if is_busy(exc):
                raise
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            return job, False, exc
        if not conn.in_transaction:
            raise _TransactionLost(
                job, StoreError(f"{self._path}: a write job ended its transaction")
            )
        conn.execute("RELEASE job")
        return job, True, value

    def _insert_lines(self, rows: list[LineRow]) -> None:
        conn = self._conn
        conn.execute("SAVEPOINT lines")
        try:
            conn.executemany(_INSERT_LINE, rows)
        except (sqlite3.DataError, sqlite3.IntegrityError, UnicodeError, ValueError):
            # One bad line (a lone surrogate, a repeated seq) must not cost the
            # whole batch.
            conn.execute("ROLLBACK TO lines")
            dropped = 0
            for row in rows:
                cursor = conn.execute(_INSERT_LINE_OR_IGNORE, _sanitised(row))
                dropped += cursor.rowcount == 0
            if dropped:
                logger.warning(
                    "%s: %d log lines repeated an existing (execution, seq); kept the"
                    " first",
                    self._path,
                    dropped,
                )
        conn.execute("RELEASE lines")


def _line_rows(lines: list[LogLine]) -> list[LineRow]:
    # Lines of one read share a timestamp; render each distinct one once.
    stamps: dict[datetime, str] = {}
    rows = []
    for line in lines:
        at = stamps.get(line.at)
        if at is None:
            at = stamps[line.at] = to_text(line.at)
        rows.append(
            (
                line.execution_id,
                line.seq,
                line.step_id,
                line.host,
                line.stream,
                at,
                line.text,
            )
        )
    return rows


def _sanitised(row: LineRow) -> LineRow:
    def clean(value: str) -> str:
        return value.encode("utf-8", "replace").decode("utf-8")

    execution_id, seq, step_id, host, stream, at, text = row
    return (
        execution_id,
        seq,
        clean(step_id),
        clean(host),
        clean(stream),
        at,
        clean(text),
    )
