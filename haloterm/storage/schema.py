"""The store's schema: ordered migrations, recorded in the ``migrations`` table.

Each migration is a list of statements applied once, in order, inside the
``BEGIN IMMEDIATE`` transaction that :func:`migrate` opens, so two processes opening
a fresh file at once never both migrate. Migrations are only ever appended to.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from sqlite_utils import Database

from haloterm.storage.clock import to_text, utc_now
from haloterm.storage.errors import StoreError
from haloterm.textsafe import visible_controls, visible_tree

logger = logging.getLogger(__name__)

_TABLES = [
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE tickets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        type TEXT NOT NULL,
        priority TEXT NOT NULL,
        status TEXT NOT NULL,
        category TEXT,
        fields TEXT NOT NULL DEFAULT '{}',
        source TEXT NOT NULL DEFAULT 'manual',
        external_key TEXT UNIQUE,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE ticket_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}',
        actor TEXT NOT NULL,
        at TEXT NOT NULL
    )""",
    """CREATE TABLE runbooks (
        name TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        tags TEXT NOT NULL DEFAULT '[]',
        latest_version INTEGER NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE runbook_versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL REFERENCES runbooks(name),
        version INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        source TEXT NOT NULL,
        definition TEXT NOT NULL,
        author TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (name, version)
    )""",
    """CREATE TABLE executions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        runbook TEXT NOT NULL,
        version INTEGER NOT NULL,
        status TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        secret_params TEXT NOT NULL DEFAULT '[]',
        trigger TEXT NOT NULL,
        ticket_id INTEGER REFERENCES tickets(id) ON DELETE SET NULL,
        operator TEXT NOT NULL,
        parent_id INTEGER REFERENCES executions(id),
        parent_step TEXT,
        owner_id TEXT,
        current_step TEXT,
        reason TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    )""",
    """CREATE TABLE step_runs (
        execution_id INTEGER NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        host TEXT NOT NULL DEFAULT '',
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        exit_code INTEGER,
        signal TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        outputs TEXT NOT NULL DEFAULT '{}',
        output_file TEXT,
        output_bytes INTEGER NOT NULL DEFAULT 0,
        output_truncated INTEGER NOT NULL DEFAULT 0,
        started_at TEXT,
        finished_at TEXT,
        PRIMARY KEY (execution_id, step_id, host)
    )""",
    """CREATE TABLE log_lines (
        id INTEGER PRIMARY KEY,
        execution_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        host TEXT NOT NULL DEFAULT '',
        stream TEXT NOT NULL,
        at TEXT NOT NULL,
        text TEXT NOT NULL
    )""",
    """CREATE TABLE approvals (
        execution_id INTEGER NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        status TEXT NOT NULL,
        approvers TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        deadline TEXT,
        min_approvals INTEGER NOT NULL DEFAULT 1,
        allow_self_approval INTEGER NOT NULL DEFAULT 0,
        requested_by TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        decisions TEXT NOT NULL DEFAULT '[]',
        decided_by TEXT,
        decided_at TEXT,
        comment TEXT,
        PRIMARY KEY (execution_id, step_id)
    )""",
    """CREATE TABLE owners (
        id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        hostname TEXT NOT NULL,
        user TEXT NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL
    )""",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}',
        origin TEXT
    )""",
]

# The ticket list filters on one column and sorts by another; each index ends in id
# so keyset paging ("after (value, id)") is a range scan, even at 250k rows.
_INDEXES = [
    "CREATE INDEX ix_tickets_updated ON tickets (updated_at, id)",
    "CREATE INDEX ix_tickets_created ON tickets (created_at, id)",
    "CREATE INDEX ix_tickets_priority ON tickets (priority, id)",
    "CREATE INDEX ix_tickets_priority_updated ON tickets (priority, updated_at, id)",
    "CREATE INDEX ix_tickets_status_updated ON tickets (status, updated_at, id)",
    "CREATE INDEX ix_tickets_status_priority ON tickets (status, priority, id)",
    "CREATE INDEX ix_tickets_type_updated ON tickets (type, updated_at, id)",
    "CREATE INDEX ix_tickets_category_updated ON tickets (category, updated_at, id)",
    "CREATE INDEX ix_ticket_events_ticket ON ticket_events (ticket_id, id)",
    "CREATE INDEX ix_executions_runbook ON executions (runbook, id)",
    "CREATE INDEX ix_executions_status ON executions (status, id)",
    "CREATE INDEX ix_executions_ticket ON executions (ticket_id, id)",
    "CREATE INDEX ix_executions_parent ON executions (parent_id, id)",
    "CREATE INDEX ix_executions_owner ON executions (owner_id)",
    "CREATE INDEX ix_log_lines_exec ON log_lines (execution_id, seq)",
    "CREATE INDEX ix_log_lines_step ON log_lines (execution_id, step_id, seq)",
    "CREATE INDEX ix_approvals_status ON approvals (status, requested_at)",
    "CREATE INDEX ix_audit_target ON audit (target_type, target_id, id)",
]

_AUDIT_APPEND_ONLY = [
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
]

# Log lines keyed by (execution, seq) in a WITHOUT ROWID table: one b-tree fewer
# to update per line than a rowid table with its own (execution, seq) index, which
# is most of the ingest rate (bench/log_ingest.py).
_LOG_LINES_BY_SEQ = [
    """CREATE TABLE log_lines_by_seq (
        execution_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        host TEXT NOT NULL DEFAULT '',
        stream TEXT NOT NULL,
        at TEXT NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    ) WITHOUT ROWID""",
    """INSERT OR IGNORE INTO log_lines_by_seq
        (execution_id, seq, step_id, host, stream, at, text)
        SELECT execution_id, seq, step_id, host, stream, at, text
        FROM log_lines ORDER BY id""",
    "DROP TABLE log_lines",
    "ALTER TABLE log_lines_by_seq RENAME TO log_lines",
    "CREATE INDEX ix_log_lines_step ON log_lines (execution_id, step_id, seq)",
]

# Approvals remember what the approver was shown and how their timeout goes on;
# local processes of running steps are recorded so recovery can stop them; the
# audit stays append-only except inside a recorded purge (``audit_purges.open``).
_OPERATIONS = [
    "ALTER TABLE approvals ADD COLUMN summary TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE approvals ADD COLUMN params_hash TEXT",
    "ALTER TABLE approvals ADD COLUMN on_timeout TEXT NOT NULL DEFAULT 'reject'",
    "ALTER TABLE approvals ADD COLUMN escalate_to TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE approvals ADD COLUMN escalated INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE approvals ADD COLUMN timeout_seconds REAL",
    "ALTER TABLE approvals ADD COLUMN reminded_at TEXT",
    """CREATE TABLE step_processes (
        execution_id INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        hostname TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pgid INTEGER NOT NULL,
        start_ticks INTEGER,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (execution_id, hostname, pid)
    )""",
    """CREATE TABLE audit_purges (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        cutoff TEXT NOT NULL,
        open INTEGER NOT NULL DEFAULT 1,
        rows INTEGER
    )""",
    "DROP TRIGGER audit_no_delete",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    WHEN NOT EXISTS (SELECT 1 FROM audit_purges WHERE open = 1 AND OLD.at < cutoff)
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
    "CREATE INDEX ix_executions_finished ON executions (finished_at)",
]

# Automation: the one lease, the ticket-event cursor (set past any history that
# predates automation, so upgrading never replays it), rule firings, schedule state
# and slots (one row per schedule, slot and clock epoch), and raw intake payloads.
_AUTOMATION = [
    """CREATE TABLE automation_lease (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        pid INTEGER NOT NULL,
        hostname TEXT NOT NULL,
        user TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    )""",
    """CREATE TABLE rule_firings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id INTEGER NOT NULL,
        ticket_id INTEGER,
        runbook TEXT NOT NULL,
        trigger_index INTEGER NOT NULL,
        event TEXT NOT NULL,
        dedupe_key TEXT,
        status TEXT NOT NULL,
        reason TEXT,
        execution_id INTEGER,
        holder TEXT,
        at TEXT NOT NULL,
        UNIQUE (event_id, runbook, trigger_index)
    )""",
    "CREATE INDEX ix_rule_firings_key"
    " ON rule_firings (runbook, trigger_index, dedupe_key, id)",
    "CREATE INDEX ix_rule_firings_ticket ON rule_firings (ticket_id, id)",
    """CREATE TABLE schedule_state (
        id TEXT PRIMARY KEY,
        paused INTEGER NOT NULL DEFAULT 0,
        paused_by TEXT,
        paused_at TEXT,
        last_slot TEXT,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE schedule_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule_id TEXT NOT NULL,
        slot_key TEXT NOT NULL,
        epoch INTEGER NOT NULL DEFAULT 0,
        scheduled_for TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        execution_id INTEGER,
        holder TEXT,
        at TEXT NOT NULL,
        UNIQUE (schedule_id, slot_key, epoch)
    )""",
    "CREATE INDEX ix_schedule_runs_schedule ON schedule_runs (schedule_id, id)",
    """CREATE TABLE intake_payloads (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        received_at TEXT NOT NULL,
        body TEXT NOT NULL,
        outcome TEXT NOT NULL DEFAULT '{}'
    )""",
    "INSERT OR IGNORE INTO meta (key, value) SELECT 'automation.event_cursor',"
    " CAST(coalesce(max(id), 0) AS TEXT) FROM ticket_events",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('automation.clock_epoch', '0')",
]

# Automation's own counters live in their own table, not in ``meta``.
_CANCEL_REQUESTS = [
    """CREATE TABLE cancel_requests (
        execution_id INTEGER PRIMARY KEY REFERENCES executions(id),
        actor TEXT NOT NULL,
        reason TEXT,
        requested_at TEXT NOT NULL
    )""",
]
"""Cancels asked for from a process that does not own the run; its owner takes them."""

_AUTOMATION_STATE = [
    """CREATE TABLE automation_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    "INSERT OR REPLACE INTO automation_state (key, value) SELECT key, value"
    " FROM meta WHERE key IN ('automation.event_cursor', 'automation.clock_epoch')",
    "DELETE FROM meta WHERE key IN"
    " ('automation.event_cursor', 'automation.clock_epoch')",
]

_VISIBLE_TEXT = [
    "UPDATE tickets SET title = haloterm_visible(title, 1),"
    " description = haloterm_visible(description, 0),"
    " fields = haloterm_visible_json(fields)",
    "UPDATE ticket_events SET data = haloterm_visible_json(data)",
    "UPDATE approvals SET message = haloterm_visible(message, 0),"
    " comment = haloterm_visible(comment, 0)",
]
"""Ticket and approval text written before the store kept control characters
visible (:mod:`haloterm.textsafe`) is made so too, so no screen needs its own guard."""

MIGRATIONS: Sequence[tuple[str, Sequence[str]]] = (
    ("0001_initial", [*_TABLES, *_INDEXES, *_AUDIT_APPEND_ONLY]),
    ("0002_log_lines_by_seq", _LOG_LINES_BY_SEQ),
    ("0003_automation", _AUTOMATION),
    ("0004_operations", _OPERATIONS),
    ("0005_automation_state", _AUTOMATION_STATE),
    ("0006_cancel_requests", _CANCEL_REQUESTS),
    ("0007_visible_text", _VISIBLE_TEXT),
)
"""Every migration, oldest first: (name, statements)."""

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(
    db: Database, path: Path, clock: Callable[[], datetime] = utc_now
) -> list[str]:
    """Bring the database up to :data:`SCHEMA_VERSION`.

    Args:
        db: the writer connection, outside any transaction.
        path: the database file, for error messages.
        clock: the time recorded for each migration.

    Returns:
        The names of the migrations applied now (empty when already current).

    Raises:
        StoreError: the file has migrations this haloterm does not know (it was
            written by a newer version), or a migration failed.
    """
    conn = db.conn
    _register_functions(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        applied = _applied(db)
        known = [name for name, _ in MIGRATIONS]
        unknown = [name for name in applied if name not in known]
        if unknown:
            raise StoreError(
                f"{path}: the database has schema version {len(applied)} "
                f"(migrations up to {unknown[-1]}), newer than this haloterm knows "
                f"({SCHEMA_VERSION}); upgrade haloterm to open it"
            )
        done = []
        for name, statements in MIGRATIONS:
            if name in applied:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, ?)",
                (name, to_text(clock())),
            )
            done.append(name)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if done:
        logger.info("migrated %s: %s", path, ", ".join(done))
    return done


def _register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions data migrations call."""

    def visible(text: str | None, one_line: int) -> str | None:
        return None if text is None else visible_controls(text, one_line=bool(one_line))

    def visible_json(text: str | None) -> str | None:
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return visible_controls(text)
        return json.dumps(visible_tree(value), ensure_ascii=False)

    conn.create_function("haloterm_visible", 2, visible, deterministic=True)
    conn.create_function("haloterm_visible_json", 1, visible_json, deterministic=True)


def _applied(db: Database) -> list[str]:
    if not db["migrations"].exists():
        db.conn.execute(
            "CREATE TABLE migrations ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " name TEXT NOT NULL UNIQUE,"
            " applied_at TEXT NOT NULL)"
        )
        return []
    rows = db.conn.execute("SELECT name FROM migrations ORDER BY id").fetchall()
    return [str(row[0]) for row in rows]
