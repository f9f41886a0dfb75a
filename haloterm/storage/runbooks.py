"""Runbooks and their versions: each changed save is a new, immutable version."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from typing import Any

from pydantic import ValidationError

from haloterm.models import Runbook
from haloterm.storage.clock import from_text, parse_time
from haloterm.storage.core import Row, StoreCore, dumps, loads
from haloterm.storage.errors import NotFoundError, StoreError
from haloterm.storage.records import RunbookSummary, SavedVersion, StoredRunbook

logger = logging.getLogger(__name__)

_SUMMARY_SQL = """
WITH stats AS (
    SELECT runbook,
           count(*) AS runs,
           sum(status = 'succeeded') AS ok,
           sum(status IN ('succeeded', 'failed', 'cancelled', 'interrupted'))
               AS done,
           max(id) AS last_id
    FROM executions GROUP BY runbook
)
SELECT r.name, r.title, r.tags, r.latest_version, r.enabled,
       coalesce(s.runs, 0) AS runs, coalesce(s.ok, 0) AS ok,
       coalesce(s.done, 0) AS done, e.status AS last_status,
       coalesce(e.finished_at, e.started_at, e.created_at) AS last_run_at
FROM runbooks r
LEFT JOIN stats s ON s.runbook = r.name
LEFT JOIN executions e ON e.id = s.last_id
ORDER BY r.name
"""


def content_hash(source_text: str) -> str:
    """The hash that tells whether a saved runbook file changed."""
    return hashlib.sha256(source_text.encode("utf-8")).hexdigest()


class RunbookStore(StoreCore):
    """Runbook methods of :class:`haloterm.storage.Store`."""

    def save_runbook(
        self, runbook: Runbook, source_text: str, *, author: str
    ) -> SavedVersion:
        """Store a runbook as a new version, unless it equals the latest one.

        Args:
            runbook: the validated definition.
            source_text: the file as written (kept for diffs and export).
            author: who saved it.

        Returns:
            The version now current, and whether this call created it.
        """
        digest = content_hash(source_text)
        definition = dumps(definition_of(runbook))
        now = self._now_text()

        def save(conn: sqlite3.Connection) -> SavedVersion:
            name = runbook.name
            row = conn.execute(
                "SELECT r.latest_version, v.content_hash FROM runbooks r"
                " JOIN runbook_versions v ON v.name = r.name"
                " AND v.version = r.latest_version WHERE r.name = ?",
                (name,),
            ).fetchone()
            if row is not None and row["content_hash"] == digest:
                return SavedVersion(
                    name=name, version=row[0], created=False, content_hash=digest
                )
            version = 1 if row is None else int(row[0]) + 1
            conn.execute(
                "INSERT INTO runbooks (name, title, tags, latest_version, enabled,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET title = excluded.title,"
                " tags = excluded.tags, latest_version = excluded.latest_version,"
                " updated_at = excluded.updated_at",
                (name, runbook.display_title, dumps(runbook.tags), version, now, now),
            )
            conn.execute(
                "INSERT INTO runbook_versions (name, version, content_hash, source,"
                " definition, author, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, version, digest, source_text, definition, author, now),
            )
            detail = {"version": version, "content_hash": digest}
            self._audit(conn, author, "runbook.save", "runbook", name, detail)
            return SavedVersion(
                name=name, version=version, created=True, content_hash=digest
            )

        saved = self.write(save)
        if saved.created:
            logger.info("runbook %s saved as version %d", saved.name, saved.version)
        return saved

    def set_runbook_enabled(self, name: str, enabled: bool, *, actor: str) -> None:
        """Enable or disable a runbook's triggers (it stays runnable by hand).

        Raises:
            NotFoundError: there is no such runbook.
        """

        def update(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE runbooks SET enabled = ?, updated_at = ? WHERE name = ?",
                (int(enabled), self._now_text(), name),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"{self.path}: no runbook {name!r}")
            action = "runbook.enable" if enabled else "runbook.disable"
            self._audit(conn, actor, action, "runbook", name)

        self.write(update)

    def get_runbook(
        self, name: str, version: int | None = None
    ) -> StoredRunbook | None:
        """One version of a runbook (the latest when ``version`` is None), or None."""
        if version is None:
            row = self._row(
                "SELECT v.* FROM runbook_versions v JOIN runbooks r"
                " ON r.name = v.name AND r.latest_version = v.version WHERE v.name = ?",
                (name,),
            )
        else:
            row = self._row(
                "SELECT * FROM runbook_versions WHERE name = ? AND version = ?",
                (name, version),
            )
        return None if row is None else self._stored(row)

    def runbook_versions(self, name: str) -> list[StoredRunbook]:
        """Every version of a runbook, newest first."""
        rows = self._rows(
            "SELECT * FROM runbook_versions WHERE name = ? ORDER BY version DESC",
            (name,),
        )
        return [self._stored(row) for row in rows]

    def list_runbooks(self) -> list[RunbookSummary]:
        """Every runbook with its latest version and run statistics, by name."""
        summaries = []
        for row in self._rows(_SUMMARY_SQL):
            done = int(row["done"])
            summaries.append(
                RunbookSummary(
                    name=row["name"],
                    title=row["title"],
                    tags=loads(row["tags"], []),
                    latest_version=row["latest_version"],
                    enabled=bool(row["enabled"]),
                    last_status=row["last_status"],
                    last_run_at=from_text(row["last_run_at"]),
                    runs=row["runs"],
                    success_rate=int(row["ok"]) / done if done else None,
                )
            )
        return summaries

    def _stored(self, row: Row) -> StoredRunbook:
        try:
            runbook = Runbook.model_validate(json.loads(row["definition"]))
        except (ValidationError, ValueError) as exc:
            raise StoreError(
                f"{self.path}: runbook {row['name']} version {row['version']} "
                f"no longer validates: {exc}"
            ) from None
        return StoredRunbook(
            name=row["name"],
            version=row["version"],
            runbook=runbook,
            source_text=row["source"],
            content_hash=row["content_hash"],
            author=row["author"],
            created_at=parse_time(row["created_at"]),
        )


def definition_of(runbook: Runbook) -> dict[str, Any]:
    """The runbook as JSON data that ``Runbook.model_validate`` accepts again.

    Durations are parsed to seconds on load but only accepted as text (``"30s"``),
    so they are written back as text here.
    """
    data: dict[str, Any] = runbook.model_dump(mode="json", by_alias=True)
    for step in data.get("steps", []):
        _as_duration(step, "timeout")
        _as_duration(step.get("retries") or {}, "delay")
    for trigger in data.get("triggers", []):
        _as_duration(trigger, "cooldown")
        schedule = trigger.get("schedule") or {}
        _as_duration(schedule, "every")
        _as_duration(schedule, "misfire_grace")
    return data


def _as_duration(holder: dict[str, Any], key: str) -> None:
    value = holder.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = f"{float(value):.6f}".rstrip("0").rstrip(".")
        holder[key] = f"{text}s"
