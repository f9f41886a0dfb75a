"""Automation's rows: the one lease, the ticket-event cursor and rule firings,
schedule state and slots, and raw intake payloads."""

from __future__ import annotations

import logging
import socket
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from haloterm.storage.clock import from_text, parse_time, to_text
from haloterm.storage.core import Row, StoreCore, dumps, loads
from haloterm.storage.errors import StoreError
from haloterm.storage.owners import pid_alive

logger = logging.getLogger(__name__)

LEASE_NAME = "automation"
CURSOR_KEY = "automation.event_cursor"
EPOCH_KEY = "automation.clock_epoch"
FiringStatus = Literal["starting", "started", "suppressed", "failed"]
SlotStatus = Literal["starting", "started", "missed", "skipped", "suppressed", "failed"]


class CursorMoved(StoreError):
    """Another process handled these ticket events first; nothing was recorded."""


class LeaseHolder(BaseModel):
    """Who holds the automation lease."""

    holder: str
    pid: int
    hostname: str
    user: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    alive: bool
    """False once the lease expired or its process on this host is gone."""

    def describe(self) -> str:
        """A line for the console: who runs automation."""
        where = f"pid {self.pid} on {self.hostname}, {self.user}"
        return f"automation runs in another session ({where})"


class FiringDecision(BaseModel):
    """What automation decided for one rule and one ticket event."""

    event_id: int
    ticket_id: int | None
    runbook: str
    trigger_index: int
    event: str
    dedupe_key: str | None = None
    status: FiringStatus
    reason: str | None = None


class RuleFiring(FiringDecision):
    """A recorded :class:`FiringDecision`."""

    id: int
    execution_id: int | None = None
    holder: str | None = None
    at: datetime


class ScheduleState(BaseModel):
    """The stored state of one schedule (``<runbook>#<trigger index>``)."""

    id: str
    paused: bool = False
    paused_by: str | None = None
    paused_at: datetime | None = None
    last_slot: datetime | None = None
    """The latest slot decided (fired, missed or skipped)."""


class SlotDecision(BaseModel):
    """What the scheduler decided for one slot of one schedule."""

    slot_key: str
    """Unique per schedule and clock epoch: the nominal wall time for fixed-time
    schedules (so a repeated DST hour cannot fire twice), the instant otherwise."""
    scheduled_for: datetime
    status: SlotStatus
    reason: str | None = None


class ScheduleRun(SlotDecision):
    """A recorded :class:`SlotDecision`."""

    id: int
    schedule_id: str
    epoch: int
    execution_id: int | None = None
    holder: str | None = None
    at: datetime


class IntakePayload(BaseModel):
    """One accepted intake request, kept as received (secrets removed)."""

    id: int
    source: str
    received_at: datetime
    body: str
    outcome: dict[str, Any] = Field(default_factory=dict)


class AutomationStore(StoreCore):
    """Automation methods of :class:`haloterm.storage.Store`."""

    # ------------------------------------------------------------------ lease

    def acquire_lease(
        self, holder: str, *, pid: int, hostname: str, user: str, ttl: float
    ) -> bool:
        """Take (or keep) the automation lease unless a live process holds it.

        A holder is dead once its lease expired or, on this host, once its pid is
        gone.

        Returns:
            True when ``holder`` holds the lease now.
        """
        now = self.now()
        expires = to_text(now + timedelta(seconds=ttl))

        def take(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT * FROM automation_lease WHERE name = ?", (LEASE_NAME,)
            ).fetchone()
            if row is not None and row["holder"] != holder and _alive(row, now):
                return False
            acquired = to_text(now)
            if row is not None and row["holder"] == holder:
                acquired = row["acquired_at"]
            conn.execute(
                "INSERT OR REPLACE INTO automation_lease (name, holder, pid, hostname,"
                " user, acquired_at, heartbeat_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    LEASE_NAME,
                    holder,
                    pid,
                    hostname,
                    user,
                    acquired,
                    to_text(now),
                    expires,
                ),
            )
            if row is None or row["holder"] != holder:
                detail = {"pid": pid, "hostname": hostname}
                if row is not None:
                    detail["previous"] = row["holder"]
                    detail["previous_pid"] = row["pid"]
                self._audit(conn, user, "automation.lease", "lease", LEASE_NAME, detail)
            return True

        return self.write(take)

    def renew_lease(self, holder: str, ttl: float) -> bool:
        """Extend the lease ``holder`` holds.

        Returns:
            False when ``holder`` no longer holds it (it expired and was taken).
        """
        now = self.now()

        def renew(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE automation_lease SET heartbeat_at = ?, expires_at = ?"
                " WHERE name = ? AND holder = ?",
                (
                    to_text(now),
                    to_text(now + timedelta(seconds=ttl)),
                    LEASE_NAME,
                    holder,
                ),
            )
            return cursor.rowcount > 0

        return self.write(renew)

    def release_lease(self, holder: str) -> None:
        """Give the lease up (at a clean stop), so another process takes it at once."""
        self.write(
            lambda conn: conn.execute(
                "DELETE FROM automation_lease WHERE name = ? AND holder = ?",
                (LEASE_NAME, holder),
            )
        )

    def lease_holder(self) -> LeaseHolder | None:
        """Who holds the automation lease, dead or alive; None when nobody does."""
        row = self._row("SELECT * FROM automation_lease WHERE name = ?", (LEASE_NAME,))
        if row is None:
            return None
        return LeaseHolder(
            holder=row["holder"],
            pid=row["pid"],
            hostname=row["hostname"],
            user=row["user"],
            acquired_at=parse_time(row["acquired_at"]),
            heartbeat_at=parse_time(row["heartbeat_at"]),
            expires_at=parse_time(row["expires_at"]),
            alive=_alive(row, self.now()),
        )

    # ------------------------------------------------------------------ rules

    def event_cursor(self) -> int:
        """The id of the last ticket event automation handled."""
        row = self._row(
            "SELECT value FROM automation_state WHERE key = ?", (CURSOR_KEY,)
        )
        return int(row[0]) if row is not None else 0

    def record_firings(
        self,
        *,
        expected_cursor: int,
        new_cursor: int,
        decisions: Sequence[FiringDecision],
        holder: str,
        actor: str,
    ) -> list[int]:
        """Record rule decisions and move the event cursor, in one transaction.

        Each decision also lands on its ticket's history (``rule_fired`` or
        ``rule_suppressed``) and in the audit.

        Returns:
            The firing ids, one per decision, in order.

        Raises:
            CursorMoved: the cursor is not at ``expected_cursor`` any more.
        """
        now = self._now_text()

        def record(conn: sqlite3.Connection) -> list[int]:
            moved = conn.execute(
                "UPDATE automation_state SET value = ? WHERE key = ? AND value = ?",
                (str(new_cursor), CURSOR_KEY, str(expected_cursor)),
            )
            if moved.rowcount == 0:
                raise CursorMoved(
                    f"{self.path}: ticket events after {expected_cursor} were "
                    "handled by another process"
                )
            return [self._insert_firing(conn, d, holder, actor, now) for d in decisions]

        return self.write(record)

    def _insert_firing(
        self,
        conn: sqlite3.Connection,
        d: FiringDecision,
        holder: str,
        actor: str,
        now: str,
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO rule_firings (event_id, ticket_id, runbook, trigger_index,"
            " event, dedupe_key, status, reason, holder, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                d.event_id,
                d.ticket_id,
                d.runbook,
                d.trigger_index,
                d.event,
                d.dedupe_key,
                d.status,
                d.reason,
                holder,
                now,
            ),
        )
        firing_id = int(cursor.lastrowid or 0)
        fired = d.status in ("starting", "started")
        kind = "rule_fired" if fired else f"rule_{d.status}"
        data = {"runbook": d.runbook, "rule": d.trigger_index, "event": d.event}
        data |= {"firing": firing_id, "reason": d.reason, "dedupe_key": d.dedupe_key}
        if d.ticket_id is not None:
            conn.execute(
                "INSERT INTO ticket_events (ticket_id, kind, data, actor, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (d.ticket_id, kind, dumps(data), actor, now),
            )
        action = "rule.fire" if fired else f"rule.{d.status}"
        self._audit(conn, actor, action, "rule", f"{d.runbook}#{d.trigger_index}", data)
        return firing_id

    def finish_firing(
        self,
        firing_id: int,
        *,
        status: FiringStatus,
        execution_id: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Record how starting a fired rule's run went."""
        self.write(
            lambda conn: conn.execute(
                "UPDATE rule_firings SET status = ?, execution_id = ?, reason = ?"
                " WHERE id = ?",
                (status, execution_id, reason, firing_id),
            )
        )

    def last_firing_at(
        self, runbook: str, trigger_index: int, dedupe_key: str
    ) -> datetime | None:
        """When a rule last fired (not suppressed) for this dedupe key."""
        row = self._row(
            "SELECT at FROM rule_firings WHERE runbook = ? AND trigger_index = ?"
            " AND dedupe_key = ? AND status IN ('starting', 'started')"
            " ORDER BY id DESC LIMIT 1",
            (runbook, trigger_index, dedupe_key),
        )
        return None if row is None else parse_time(row[0])

    def firing_actor(self, firing_id: int) -> str | None:
        """Who caused a rule firing: the actor of the ticket event it fired on."""
        row = self._row(
            "SELECT e.actor FROM rule_firings AS f"
            " JOIN ticket_events AS e ON e.id = f.event_id WHERE f.id = ?",
            (firing_id,),
        )
        return None if row is None else str(row[0])

    def rule_firings(
        self,
        *,
        ticket_id: int | None = None,
        status: str | None = None,
        limit: int = 200,
    ) -> list[RuleFiring]:
        """Rule firings, newest first, optionally for one ticket or one status."""
        where, params = ["1 = 1"], list[Any]()
        if ticket_id is not None:
            where.append("ticket_id = ?")
            params.append(ticket_id)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = (
            f"SELECT * FROM rule_firings WHERE {' AND '.join(where)}"
            " ORDER BY id DESC LIMIT ?"
        )
        return [_firing(row) for row in self._rows(sql, [*params, limit])]

    def execution_id_by_trigger(self, trigger: str) -> int | None:
        """The execution started with this exact trigger text, if any."""
        row = self._row(
            "SELECT id FROM executions WHERE trigger = ? ORDER BY id LIMIT 1",
            (trigger,),
        )
        return None if row is None else int(row[0])

    # ------------------------------------------------------------------ schedules

    def schedule_states(self) -> dict[str, ScheduleState]:
        """Every stored schedule state, by schedule id."""
        rows = self._rows("SELECT * FROM schedule_state")
        return {row["id"]: _schedule_state(row) for row in rows}

    def set_schedule_paused(
        self, schedule_id: str, paused: bool, *, actor: str
    ) -> None:
        """Pause or resume a schedule (audited). Slots passed while paused are not
        run later: resuming starts from the next slot."""
        now = self._now_text()

        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO schedule_state (id, paused, paused_by, paused_at,"
                " last_slot, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET paused = excluded.paused,"
                " paused_by = excluded.paused_by, paused_at = excluded.paused_at,"
                " last_slot = CASE WHEN excluded.paused = 0 THEN excluded.last_slot"
                " ELSE schedule_state.last_slot END,"
                " updated_at = excluded.updated_at",
                (
                    schedule_id,
                    int(paused),
                    actor if paused else None,
                    now if paused else None,
                    now,
                    now,
                ),
            )
            action = "schedule.pause" if paused else "schedule.resume"
            self._audit(conn, actor, action, "schedule", schedule_id)

        self.write(update)

    def set_schedule_start(self, schedule_id: str, last_slot: datetime) -> None:
        """Begin tracking a schedule: slots up to ``last_slot`` count as decided."""
        now = self._now_text()
        self.write(
            lambda conn: conn.execute(
                "INSERT INTO schedule_state (id, last_slot, updated_at)"
                " VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " last_slot = excluded.last_slot, updated_at = excluded.updated_at",
                (schedule_id, to_text(last_slot), now),
            )
        )

    def record_slots(
        self,
        schedule_id: str,
        decisions: Sequence[SlotDecision],
        *,
        last_slot: datetime,
        holder: str,
        actor: str,
        audit: dict[str, Any] | None = None,
    ) -> list[int | None]:
        """Record slot decisions and the schedule's new ``last_slot`` at once.

        A slot already recorded (same schedule, slot key and clock epoch) is not
        recorded again: its entry in the result is None, and a ``suppressed``
        duplicate is audited instead.

        Returns:
            Per decision, the new run id, or None for a duplicate slot.
        """
        now = self._now_text()

        def record(conn: sqlite3.Connection) -> list[int | None]:
            epoch = _epoch(conn)
            ids: list[int | None] = []
            for d in decisions:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO schedule_runs (schedule_id, slot_key, epoch,"
                    " scheduled_for, status, reason, holder, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        schedule_id,
                        d.slot_key,
                        epoch,
                        to_text(d.scheduled_for),
                        d.status,
                        d.reason,
                        holder,
                        now,
                    ),
                )
                ids.append(int(cursor.lastrowid or 0) if cursor.rowcount else None)
                if not cursor.rowcount:
                    detail = {
                        "slot": d.slot_key,
                        "scheduled_for": to_text(d.scheduled_for),
                    }
                    detail["reason"] = "suppressed duplicate (slot already recorded)"
                    self._audit(
                        conn,
                        actor,
                        "schedule.suppressed",
                        "schedule",
                        schedule_id,
                        detail,
                    )
            conn.execute(
                "INSERT INTO schedule_state (id, last_slot, updated_at)"
                " VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " last_slot = max(coalesce(schedule_state.last_slot, ''),"
                " excluded.last_slot), updated_at = excluded.updated_at",
                (schedule_id, to_text(last_slot), now),
            )
            if audit:
                self._audit(
                    conn, actor, audit.pop("action"), "schedule", schedule_id, audit
                )
            return ids

        return self.write(record)

    def finish_slot(
        self,
        run_id: int,
        *,
        status: SlotStatus,
        execution_id: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Record how starting a slot's run went."""
        self.write(
            lambda conn: conn.execute(
                "UPDATE schedule_runs SET status = ?, execution_id = ?,"
                " reason = coalesce(?, reason) WHERE id = ?",
                (status, execution_id, reason, run_id),
            )
        )

    def schedule_runs(
        self,
        schedule_id: str | None = None,
        *,
        status: str | None = None,
        limit: int = 200,
    ) -> list[ScheduleRun]:
        """Recorded slots, newest first."""
        where, params = ["1 = 1"], list[Any]()
        if schedule_id is not None:
            where.append("schedule_id = ?")
            params.append(schedule_id)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = (
            f"SELECT * FROM schedule_runs WHERE {' AND '.join(where)}"
            " ORDER BY id DESC LIMIT ?"
        )
        return [_schedule_run(row) for row in self._rows(sql, [*params, limit])]

    def clock_epoch(self) -> int:
        """Bumped each time the wall clock is seen going back (slots then repeat)."""
        row = self._row(
            "SELECT value FROM automation_state WHERE key = ?", (EPOCH_KEY,)
        )
        return int(row[0]) if row is not None else 0

    def bump_clock_epoch(self, *, actor: str, detail: dict[str, Any]) -> int:
        """Start a new clock epoch after the clock went back, and audit the jump.

        Every schedule's ``last_slot`` is reset to now, so slots are decided afresh
        from the corrected clock.

        Returns:
            The new epoch.
        """
        now = self._now_text()

        def bump(conn: sqlite3.Connection) -> int:
            epoch = _epoch(conn) + 1
            conn.execute(
                "INSERT OR REPLACE INTO automation_state (key, value) VALUES (?, ?)",
                (EPOCH_KEY, str(epoch)),
            )
            conn.execute(
                "UPDATE schedule_state SET last_slot = ?, updated_at = ?", (now, now)
            )
            self._audit(
                conn, actor, "clock.jump", "clock", "wall", {**detail, "epoch": epoch}
            )
            return epoch

        return self.write(bump)

    # ------------------------------------------------------------------ intake

    def record_intake(
        self, source: str, body: str, outcome: dict[str, Any], *, actor: str
    ) -> int:
        """Keep one accepted intake payload as received, and audit it."""
        now = self._now_text()

        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO intake_payloads (source, received_at, body, outcome)"
                " VALUES (?, ?, ?, ?)",
                (source, now, body, dumps(outcome)),
            )
            payload_id = int(cursor.lastrowid or 0)
            self._audit(conn, actor, "intake.accept", "intake", payload_id, outcome)
            return payload_id

        return self.write(insert)

    def intake_payloads(self, *, limit: int = 100) -> list[IntakePayload]:
        """Kept intake payloads, newest first."""
        rows = self._rows(
            "SELECT * FROM intake_payloads ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [
            IntakePayload(
                id=row["id"],
                source=row["source"],
                received_at=parse_time(row["received_at"]),
                body=row["body"],
                outcome=loads(row["outcome"], {}),
            )
            for row in rows
        ]


def _alive(row: Row, now: datetime) -> bool:
    if row["expires_at"] < to_text(now):
        return False
    if row["hostname"] == socket.gethostname():
        return pid_alive(int(row["pid"]))
    return True


def _epoch(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT value FROM automation_state WHERE key = ?", (EPOCH_KEY,)
    ).fetchone()
    return int(row[0]) if row is not None else 0


def _firing(row: Row) -> RuleFiring:
    return RuleFiring(
        id=row["id"],
        event_id=row["event_id"],
        ticket_id=row["ticket_id"],
        runbook=row["runbook"],
        trigger_index=row["trigger_index"],
        event=row["event"],
        dedupe_key=row["dedupe_key"],
        status=row["status"],
        reason=row["reason"],
        execution_id=row["execution_id"],
        holder=row["holder"],
        at=parse_time(row["at"]),
    )


def _schedule_state(row: Row) -> ScheduleState:
    return ScheduleState(
        id=row["id"],
        paused=bool(row["paused"]),
        paused_by=row["paused_by"],
        paused_at=from_text(row["paused_at"]),
        last_slot=from_text(row["last_slot"]),
    )


def _schedule_run(row: Row) -> ScheduleRun:
    return ScheduleRun(
        id=row["id"],
        schedule_id=row["schedule_id"],
        slot_key=row["slot_key"],
        epoch=row["epoch"],
        scheduled_for=parse_time(row["scheduled_for"]),
        status=row["status"],
        reason=row["reason"],
        execution_id=row["execution_id"],
        holder=row["holder"],
        at=parse_time(row["at"]),
    )
