"""Approval requests and decisions, decided by compare-and-set in the store.

Several consoles may answer the same approval within milliseconds; each decision is
checked and written in one ``BEGIN IMMEDIATE`` transaction, so exactly one decision
settles a waiting approval and every other caller learns who settled it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from haloterm.config import os_user
from haloterm.storage.clock import from_text, parse_time, to_text
from haloterm.storage.core import Row, StoreCore, dumps, loads
from haloterm.storage.errors import ApprovalRefused, NotFoundError
from haloterm.storage.records import Approval, ApprovalDecision, Decision
from haloterm.textsafe import visible_controls

logger = logging.getLogger(__name__)

_DECISIONS = ("approved", "rejected", "timed_out")


class ApprovalStore(StoreCore):
    """Approval methods of :class:`haloterm.storage.Store`."""

    def create_approval(
        self,
        *,
        execution_id: int,
        step_id: str,
        approvers: list[str],
        message: str,
        deadline: datetime | None,
        min_approvals: int,
        allow_self_approval: bool,
        requested_by: str,
        summary: dict[str, Any] | None = None,
        on_timeout: str = "reject",
        escalate_to: list[str] | None = None,
        timeout_seconds: float | None = None,
        origin: str | None = None,
    ) -> None:
        """Open an approval request (status ``waiting``).

        ``summary`` is what the approver is shown besides the message (the steps
        that run next and the params, secrets already masked); its SHA-256 is
        stored and audited with the request and every decision. ``on_timeout``,
        ``escalate_to`` and ``timeout_seconds`` tell any process how the wait
        goes on after the deadline.

        Requesting again for a step that is still waiting keeps the stored request
        (and its deadline), so a restarted owner resumes the same wait; a decided
        request is replaced by a fresh one (a re-run of the step).

        Raises:
            ValueError: no approvers, or ``min_approvals`` below 1.
        """
        if not approvers:
            raise ValueError("an approval needs at least one approver")
        if min_approvals < 1:
            raise ValueError("min_approvals must be at least 1")
        now = self._now_text()
        # The message is rendered from params and ticket fields: untrusted text.
        message = visible_controls(message)
        shown = summary or {}
        digest = params_hash(shown)
        values = (
            execution_id,
            step_id,
            dumps(approvers),
            message,
            None if deadline is None else to_text(deadline),
            min_approvals,
            int(allow_self_approval),
            requested_by,
            now,
            dumps(shown),
            digest,
            on_timeout,
            dumps(escalate_to or []),
            timeout_seconds,
        )

        def insert(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "INSERT INTO approvals (execution_id, step_id, status, approvers,"
                " message, deadline, min_approvals, allow_self_approval, requested_by,"
                " requested_at, summary, params_hash, on_timeout, escalate_to,"
                " timeout_seconds)"
                " VALUES (?, ?, 'waiting', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (execution_id, step_id) DO UPDATE SET"
                " status = 'waiting', approvers = excluded.approvers,"
                " message = excluded.message, deadline = excluded.deadline,"
                " min_approvals = excluded.min_approvals,"
                " allow_self_approval = excluded.allow_self_approval,"
                " requested_by = excluded.requested_by,"
                " requested_at = excluded.requested_at, decisions = '[]',"
                " decided_by = NULL, decided_at = NULL, comment = NULL,"
                " summary = excluded.summary, params_hash = excluded.params_hash,"
                " on_timeout = excluded.on_timeout,"
                " escalate_to = excluded.escalate_to,"
                " timeout_seconds = excluded.timeout_seconds,"
                " escalated = 0, reminded_at = NULL"
                " WHERE approvals.status != 'waiting'",
                values,
            )
            if cursor.rowcount == 0:
                return
            detail: dict[str, Any] = {"step_id": step_id, "approvers": approvers}
            detail["message"] = message
            detail |= {"params_hash": digest, "deadline": values[4]}
            detail |= {"next": shown.get("next", []), "terminal": origin}
            self._audit(
                conn,
                requested_by,
                "approval.request",
                "execution",
                execution_id,
                detail,
                origin,
            )

        self.write(insert)

    def get_approval(self, execution_id: int, step_id: str) -> Approval | None:
        """One approval, or None."""
        row = self._row(
            "SELECT * FROM approvals WHERE execution_id = ? AND step_id = ?",
            (execution_id, step_id),
        )
        return None if row is None else _approval(row)

    def pending_approvals(
        self, *, offered_at: datetime | None = None
    ) -> list[Approval]:
        """Every waiting approval, oldest request first.

        Args:
            offered_at: when given, only approvals whose deadline is still ahead of
                this instant: the ones a click can still decide.
        """
        sql = "SELECT * FROM approvals WHERE status = 'waiting'"
        params: list[Any] = []
        if offered_at is not None:
            sql += " AND (deadline IS NULL OR deadline > ?)"
            params.append(to_text(offered_at))
        sql += " ORDER BY requested_at, execution_id, step_id"
        return [_approval(row) for row in self._rows(sql, params)]

    def remind_approval(
        self, execution_id: int, step_id: str, *, actor: str, note: str
    ) -> bool:
        """Record that a waiting approval's reminder went out (once per deadline).

        Returns:
            True for the one caller that records it; False when it was already
            recorded or the approval is no longer waiting.
        """
        now = self._now_text()

        def remind(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE approvals SET reminded_at = ? WHERE execution_id = ?"
                " AND step_id = ? AND status = 'waiting' AND reminded_at IS NULL",
                (now, execution_id, step_id),
            )
            if cursor.rowcount != 1:
                return False
            detail = {"step_id": step_id, "note": note}
            self._audit(
                conn, actor, "approval.remind", "execution", execution_id, detail
            )
            return True

        return self.write(remind)

    def escalate_approval(
        self,
        execution_id: int,
        step_id: str,
        *,
        approvers: list[str],
        deadline: datetime | None,
        actor: str,
    ) -> Approval | None:
        """Hand a timed-out approval to more approvers for another timeout period.

        The new approvers join the old ones; the deadline moves and the reminder
        is due again. It happens once per request.

        Returns:
            The approval after the change, or None when it was already escalated or
            is no longer waiting.
        """
        new_deadline = None if deadline is None else to_text(deadline)

        def escalate(conn: sqlite3.Connection) -> Approval | None:
            row = conn.execute(
                "SELECT * FROM approvals WHERE execution_id = ? AND step_id = ?"
                " AND status = 'waiting' AND escalated = 0",
                (execution_id, step_id),
            ).fetchone()
            if row is None:
                return None
            current = _approval(row)
            merged = list(dict.fromkeys([*current.approvers, *approvers]))
            conn.execute(
                "UPDATE approvals SET approvers = ?, deadline = ?, escalated = 1,"
                " reminded_at = NULL WHERE execution_id = ? AND step_id = ?",
                (dumps(merged), new_deadline, execution_id, step_id),
            )
            detail: dict[str, Any] = {"step_id": step_id, "approvers": merged}
            detail |= {"added": approvers, "deadline": new_deadline}
            detail |= {"previous_deadline": row["deadline"]}
            self._audit(
                conn, actor, "approval.escalate", "execution", execution_id, detail
            )
            return current.model_copy(
                update={
                    "approvers": merged,
                    "deadline": deadline,
                    "escalated": True,
                    "reminded_at": None,
                }
            )

        return self.write(escalate)

    def decide_approval(
        self,
        execution_id: int,
        step_id: str,
        *,
        actor: str,
        decision: Decision,
        comment: str | None = None,
        roles: Iterable[str] = frozenset(),
        origin: str | None = None,
    ) -> Approval:
        """Record one decision on a waiting approval (compare-and-set).

        Each distinct approver's ``approved`` counts toward ``min_approvals``; the
        approval is ``approved`` at quorum. One ``rejected`` decides it. A
        ``timed_out`` decision (from the owner's timer) needs no approver rights.

        Args:
            execution_id: the execution.
            step_id: the approval step.
            actor: who decides.
            decision: ``approved``, ``rejected`` or ``timed_out``.
            comment: the approver's words, kept with the decision and the audit.
            roles: the actor's roles, matched against ``role:<name>`` approvers.
            origin: where the decision came from (host, process, terminal).

        Returns:
            The approval after the decision.

        Raises:
            ApprovalRefused: it is already decided or timed out (naming who and
                when), its deadline has passed, the actor may not approve it, or
                the actor already answered.
            NotFoundError: there is no such approval.
        """
        if decision not in _DECISIONS:
            raise ValueError(f"unknown decision {decision!r}")
        role_set = set(roles)
        now = self.now()
        if comment is not None:
            comment = visible_controls(comment)

        def decide(conn: sqlite3.Connection) -> Approval:
            row = conn.execute(
                "SELECT * FROM approvals WHERE execution_id = ? AND step_id = ?",
                (execution_id, step_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"{self.path}: no approval for step {step_id} of #{execution_id}"
                )
            approval = _approval(row)
            _check_decision(approval, actor, decision, role_set)
            _check_deadline(approval, decision, now)
            entry = ApprovalDecision(
                by=actor, decision=decision, at=now, comment=comment
            )
            decided = _settle(approval, entry)
            _store_decision(conn, decided)
            detail: dict[str, Any] = {"step_id": step_id, "decision": decision}
            detail |= {"status": decided.status, "comment": comment}
            detail |= {"params_hash": approval.params_hash, "terminal": origin}
            self._audit(
                conn,
                actor,
                f"approval.{decision}",
                "execution",
                execution_id,
                detail,
                origin,
            )
            return decided

        result = self.write(decide)
        logger.info(
            "approval %s/%s: %s by %s -> %s",
            execution_id,
            step_id,
            decision,
            actor,
            result.status,
        )
        return result


def _check_decision(
    approval: Approval, actor: str, decision: Decision, roles: set[str]
) -> None:
    if approval.status != "waiting":
        when = approval.decided_at
        stamp = "" if when is None else f" at {when:%Y-%m-%d %H:%M:%SZ}"
        if approval.status == "timed_out":
            reason = f"already timed out{stamp}"
        else:
            reason = f"already {approval.status} by {approval.decided_by}{stamp}"
        raise ApprovalRefused(reason, approval.decided_by, approval.decided_at)
    if decision == "timed_out":
        return
    allowed = actor in approval.approvers or any(
        f"role:{role}" in approval.approvers for role in roles
    )
    if not allowed:
        raise ApprovalRefused(f"{actor} is not an approver of this step")
    if actor == approval.requested_by and not approval.allow_self_approval:
        raise ApprovalRefused(f"{actor} started this run and may not approve it")
    if any(entry.by == actor for entry in approval.decisions):
        raise ApprovalRefused(f"{actor} has already answered this approval")


def _check_deadline(approval: Approval, decision: Decision, now: datetime) -> None:
    # Past the deadline only the owner's timer decides (its on_timeout may approve,
    # reject or escalate); a click that arrives late changes nothing.
    deadline = approval.deadline
    if decision != "timed_out" and deadline is not None and now >= deadline:
        raise ApprovalRefused(f"already timed out at {deadline:%Y-%m-%d %H:%M:%SZ}")


def _settle(approval: Approval, entry: ApprovalDecision) -> Approval:
    decisions = [*approval.decisions, entry]
    approvals = {d.by for d in decisions if d.decision == "approved"}
    status = approval.status
    if entry.decision in ("rejected", "timed_out"):
        status = entry.decision
    elif len(approvals) >= approval.min_approvals:
        status = "approved"
    settled = status != "waiting"
    return approval.model_copy(
        update={
            "status": status,
            "decisions": decisions,
            "decided_by": entry.by if settled else None,
            "decided_at": entry.at if settled else None,
            "comment": entry.comment if settled else approval.comment,
        }
    )


def _store_decision(conn: sqlite3.Connection, approval: Approval) -> None:
    decisions = [d.model_dump(mode="json") for d in approval.decisions]
    decided_at = None if approval.decided_at is None else to_text(approval.decided_at)
    cursor = conn.execute(
        "UPDATE approvals SET status = ?, decisions = ?, decided_by = ?,"
        " decided_at = ?, comment = ? WHERE execution_id = ? AND step_id = ?"
        " AND status = 'waiting'",
        (
            approval.status,
            dumps(decisions),
            approval.decided_by,
            decided_at,
            approval.comment,
            approval.execution_id,
            approval.step_id,
        ),
    )
    if cursor.rowcount != 1:
        # Unreachable: the row was read as waiting in this immediate transaction.
        raise ApprovalRefused("the approval changed while it was being decided")


def _approval(row: Row) -> Approval:
    return Approval(
        execution_id=row["execution_id"],
        step_id=row["step_id"],
        status=row["status"],
        approvers=loads(row["approvers"], []),
        message=row["message"],
        deadline=from_text(row["deadline"]),
        min_approvals=row["min_approvals"],
        allow_self_approval=bool(row["allow_self_approval"]),
        requested_by=row["requested_by"],
        requested_at=parse_time(row["requested_at"]),
        decisions=[
            ApprovalDecision.model_validate(d) for d in loads(row["decisions"], [])
        ],
        decided_by=row["decided_by"],
        decided_at=from_text(row["decided_at"]),
        comment=row["comment"],
        summary=loads(row["summary"], {}),
        params_hash=row["params_hash"],
        on_timeout=row["on_timeout"],
        escalate_to=loads(row["escalate_to"], []),
        escalated=bool(row["escalated"]),
        timeout_seconds=row["timeout_seconds"],
        reminded_at=from_text(row["reminded_at"]),
    )


def params_hash(summary: dict[str, Any]) -> str:
    """SHA-256 (hex) of what an approver is shown, in a canonical JSON form."""
    text = json.dumps(summary, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def terminal_origin() -> str:
    """Where this process acts from: host and pid, OS account, terminal, SSH client.

    Recorded with each approval request and decision, so the audit says which
    terminal (``/dev/pts/3``) or SSH connection a click came from.
    """
    # The OS account too: an operator acting as another (act_as) is named by it.
    parts = [f"{socket.gethostname()}:{os.getpid()}", f"account {os_user()}"]
    for fd in (0, 1, 2):
        try:
            parts.append(f"tty {os.ttyname(fd)}")
        except OSError:
            continue
        break
    ssh = os.environ.get("SSH_CLIENT") or os.environ.get("SSH_CONNECTION")
    if ssh:
        parts.append(f"ssh from {ssh.split()[0]}")
    return " ".join(parts)
