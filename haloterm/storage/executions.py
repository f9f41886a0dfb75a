"""Executions, their step runs and log lines, and the processes that own them."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from haloterm.engine.events import LogLine
from haloterm.models import Execution, ExecutionStatus, StepRun, StepStatus
from haloterm.storage.clock import from_text, parse_time, to_text
from haloterm.storage.core import Row, StoreCore, dumps, loads
from haloterm.storage.errors import NotFoundError

logger = logging.getLogger(__name__)

MASK = "******"
_UNFINISHED = ("queued", "running", "waiting")
_UPDATABLE = {
    "status",
    "current_step",
    "reason",
    "started_at",
    "finished_at",
    "owner_id",
}
_TIMES = {"started_at", "finished_at"}
_STEP_COLUMNS = (
    "status",
    "reason",
    "exit_code",
    "signal",
    "attempts",
    "outputs",
    "output_file",
    "output_bytes",
    "output_truncated",
    "started_at",
    "finished_at",
)


class ExecutionStore(StoreCore):
    """Execution, step and log methods of :class:`haloterm.storage.Store`."""

    def create_execution(
        self,
        *,
        runbook: str,
        version: int,
        params: dict[str, Any],
        secret_params: list[str],
        trigger: str,
        operator: str,
        ticket_id: int | None = None,
        parent_id: int | None = None,
        parent_step: str | None = None,
        owner_id: str | None = None,
        step_ids: list[str],
    ) -> Execution:
        """Insert a queued execution with a pending step run per step, and audit it.

        Args:
            runbook: the runbook's name.
            version: the pinned runbook version.
            params: the param values, without secret values.
            secret_params: names of the secret params (their values are never stored).
            trigger: ``manual``, ``rule``, ``schedule``, ``cli``, ``child`` ...
            operator: who started it.
            ticket_id: the ticket it runs against.
            parent_id: the parent execution of a child run.
            parent_step: the parent's step that started it.
            owner_id: the process that runs it.
            step_ids: every step id of the runbook, in order.

        Raises:
            ValueError: ``params`` holds a value for a secret param.
        """
        leaked = [
            name for name in secret_params if params.get(name) not in (None, MASK)
        ]
        if leaked:
            raise ValueError(
                f"secret params must not be stored; remove {', '.join(sorted(leaked))}"
            )
        now = self._now_text()

        def insert(conn: sqlite3.Connection) -> Execution:
            cursor = conn.execute(
                "INSERT INTO executions (runbook, version, status, params,"
                " secret_params, trigger, ticket_id, operator, parent_id,"
                " parent_step, owner_id, created_at)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    runbook,
                    version,
                    dumps(params),
                    dumps(sorted(secret_params)),
                    trigger,
                    ticket_id,
                    operator,
                    parent_id,
                    parent_step,
                    owner_id,
                    now,
                ),
            )
            execution_id = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO step_runs (execution_id, step_id, host, position, status)"
                " VALUES (?, ?, '', ?, 'pending')",
                [(execution_id, step_id, i) for i, step_id in enumerate(step_ids)],
            )
            detail = {"runbook": runbook, "version": version, "trigger": trigger}
            detail |= {"params": params, "ticket_id": ticket_id, "parent_id": parent_id}
            self._audit(
                conn, operator, "execution.create", "execution", execution_id, detail
            )
            return _execution_or_raise(conn, execution_id, self)

        return self.write(insert)

    def get_execution(self, execution_id: int) -> Execution | None:
        """One execution, or None."""
        row = self._row("SELECT * FROM executions WHERE id = ?", (execution_id,))
        return None if row is None else _execution(row)

    def update_execution(self, execution_id: int, **fields: Any) -> Execution:
        """Change an execution's ``status``, ``current_step``, ``reason``,
        ``started_at``, ``finished_at`` or ``owner_id``.

        Returns:
            The execution after the change.

        Raises:
            ValueError: a field that cannot be changed, or an unknown status.
            NotFoundError: there is no such execution.
        """
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(
                f"cannot update execution fields: {', '.join(sorted(unknown))}"
            )
        values = {key: _column_value(key, value) for key, value in fields.items()}
        if "status" in values:
            values["status"] = ExecutionStatus(values["status"]).value

        def update(conn: sqlite3.Connection) -> Execution:
            if values:
                # Column names come from _UPDATABLE, never from the caller.
                assignments = ", ".join(f"{column} = ?" for column in values)
                conn.execute(
                    f"UPDATE executions SET {assignments} WHERE id = ?",
                    [*values.values(), execution_id],
                )
            return _execution_or_raise(conn, execution_id, self)

        return self.write(update)

    def list_executions(
        self,
        *,
        runbook: str | None = None,
        status: str | Sequence[str] | None = None,
        ticket_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Execution]:
        """Executions, newest first, filtered; ``before_id`` gives the next page."""
        where, params = ["1 = 1"], list[Any]()
        if runbook is not None:
            where.append("runbook = ?")
            params.append(runbook)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params += statuses
        if ticket_id is not None:
            where.append("ticket_id = ?")
            params.append(ticket_id)
        if since is not None:
            where.append("created_at >= ?")
            params.append(to_text(since))
        if until is not None:
            where.append("created_at < ?")
            params.append(to_text(until))
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        clause = " AND ".join(where)
        sql = f"SELECT * FROM executions WHERE {clause} ORDER BY id DESC LIMIT ?"
        return [_execution(row) for row in self._rows(sql, [*params, limit])]

    def child_executions(self, parent_id: int) -> list[Execution]:
        """The child runs an execution started, oldest first."""
        rows = self._rows(
            "SELECT * FROM executions WHERE parent_id = ? ORDER BY id", (parent_id,)
        )
        return [_execution(row) for row in rows]

    def running_executions_of(self, runbook: str) -> list[Execution]:
        """A runbook's executions that have not finished (queued, running, waiting)."""
        rows = self._rows(
            "SELECT * FROM executions WHERE runbook = ?"
            " AND status IN ('queued', 'running', 'waiting') ORDER BY id",
            (runbook,),
        )
        return [_execution(row) for row in rows]

    def save_step_run(self, run: StepRun) -> None:
        """Insert or replace the row of one step (or one host of it)."""
        data = run.model_dump(mode="json")
        values = [_column_value(key, data[key]) for key in _STEP_COLUMNS]
        values[_STEP_COLUMNS.index("outputs")] = dumps(run.outputs)
        values[_STEP_COLUMNS.index("output_truncated")] = int(run.output_truncated)
        key = (run.execution_id, run.step_id)

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO step_runs (execution_id, step_id, host, position,"
                f" {', '.join(_STEP_COLUMNS)}) VALUES (?, ?, ?,"
                " coalesce((SELECT min(position) FROM step_runs"
                "  WHERE execution_id = ? AND step_id = ?), 1000000),"
                f" {', '.join('?' for _ in _STEP_COLUMNS)})"
                " ON CONFLICT (execution_id, step_id, host) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in _STEP_COLUMNS),
                [*key, run.host, *key, *values],
            )

        self.write(upsert)

    def step_runs(self, execution_id: int) -> list[StepRun]:
        """An execution's step runs in step order; a step's own row before its hosts."""
        rows = self._rows(
            "SELECT * FROM step_runs WHERE execution_id = ? ORDER BY position, host",
            (execution_id,),
        )
        return [_step_run(row) for row in rows]

    def get_logs(
        self,
        execution_id: int,
        *,
        step_id: str | None = None,
        host: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[LogLine]:
        """Committed log lines of an execution with ``seq`` above ``after_seq``."""
        where = ["execution_id = ?", "seq > ?"]
        params: list[Any] = [execution_id, after_seq]
        if step_id is not None:
            where.append("step_id = ?")
            params.append(step_id)
        if host is not None:
            where.append("host = ?")
            params.append(host)
        sql = (
            "SELECT execution_id, seq, step_id, host, stream, at, text FROM log_lines"
            f" WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        )
        return [_log_line(row) for row in self._rows(sql, [*params, limit])]

    def log_count(self, execution_id: int, step_id: str | None = None) -> int:
        """How many log lines an execution (or one of its steps) has stored."""
        if step_id is None:
            row = self._row(
                "SELECT count(*) FROM log_lines WHERE execution_id = ?", (execution_id,)
            )
        else:
            row = self._row(
                "SELECT count(*) FROM log_lines WHERE execution_id = ? AND step_id = ?",
                (execution_id, step_id),
            )
        return int(row[0]) if row is not None else 0

    def max_log_seq(self, execution_id: int) -> int:
        """The highest stored ``seq`` of an execution's log (0 when it has none)."""
        row = self._row(
            "SELECT max(seq) FROM log_lines WHERE execution_id = ?", (execution_id,)
        )
        return int(row[0]) if row is not None and row[0] is not None else 0


def _column_value(key: str, value: Any) -> Any:
    if key in _TIMES and isinstance(value, datetime):
        return to_text(value)
    if key in _TIMES and isinstance(value, str):
        return to_text(datetime.fromisoformat(value))
    return (
        value.value if hasattr(value, "value") and not isinstance(value, str) else value
    )


def _execution_or_raise(
    conn: sqlite3.Connection, execution_id: int, store: StoreCore
) -> Execution:
    row = conn.execute(
        "SELECT * FROM executions WHERE id = ?", (execution_id,)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"{store.path}: no execution #{execution_id}")
    return _execution(row)


def _execution(row: Row) -> Execution:
    return Execution(
        id=row["id"],
        runbook=row["runbook"],
        version=row["version"],
        status=ExecutionStatus(row["status"]),
        params=loads(row["params"], {}),
        secret_params=loads(row["secret_params"], []),
        trigger=row["trigger"],
        ticket_id=row["ticket_id"],
        operator=row["operator"],
        parent_id=row["parent_id"],
        parent_step=row["parent_step"],
        owner_id=row["owner_id"],
        current_step=row["current_step"],
        reason=row["reason"],
        created_at=parse_time(row["created_at"]),
        started_at=from_text(row["started_at"]),
        finished_at=from_text(row["finished_at"]),
    )


def _step_run(row: Row) -> StepRun:
    return StepRun(
        execution_id=row["execution_id"],
        step_id=row["step_id"],
        host=row["host"],
        status=StepStatus(row["status"]),
        reason=row["reason"],
        exit_code=row["exit_code"],
        signal=row["signal"],
        attempts=row["attempts"],
        outputs=loads(row["outputs"], {}),
        output_file=row["output_file"],
        output_bytes=row["output_bytes"],
        output_truncated=bool(row["output_truncated"]),
        started_at=from_text(row["started_at"]),
        finished_at=from_text(row["finished_at"]),
    )


def _log_line(row: Row) -> LogLine:
    return LogLine(
        execution_id=row["execution_id"],
        step_id=row["step_id"],
        host=row["host"],
        stream=row["stream"],
        seq=row["seq"],
        at=parse_time(row["at"]),
        text=row["text"],
    )
