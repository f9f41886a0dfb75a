"""Tickets, their history, and the ticket list's query (filters, sort, keyset pages)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, get_args

from haloterm.models import PRIORITIES, Execution, Ticket, TicketStatus
from haloterm.storage.clock import parse_time, to_text
from haloterm.storage.core import Row, StoreCore, dumps, loads
from haloterm.storage.errors import NotFoundError, StoreError
from haloterm.storage.executions import _execution
from haloterm.storage.records import (
    TicketCursor,
    TicketEvent,
    TicketPage,
    TicketQuery,
    TicketSort,
)
from haloterm.textsafe import visible_controls, visible_tree

logger = logging.getLogger(__name__)

_STATUSES = {status.value for status in TicketStatus}
_FILTER_KEYS = ("priority", "status", "type", "category")
_COUNT_CACHE_SIZE = 64
_UNFINISHED = ("queued", "running", "waiting")


class ConsoleStamp(NamedTuple):
    """Cheap marks that move when what the ticket list shows may have changed.

    Log lines and step records do not move them, so a console can tell "a run wrote
    logs" (nothing to redraw) from "a ticket or a run changed" without re-reading
    the page.
    """

    tickets: tuple[int, int]
    """The highest ticket id ever given and the newest ticket event: every create,
    update, note and status change moves one of them."""
    runs: tuple[int, int]
    """The newest execution id and how many executions are unfinished."""
    runbooks: int
    """The newest runbook version id."""


class TicketStore(StoreCore):
    """Ticket methods of :class:`haloterm.storage.Store`."""

    def create_ticket(
        self,
        *,
        title: str,
        type: str = "incident",
        priority: str = "P3",
        description: str = "",
        category: str | None = None,
        fields: dict[str, Any] | None = None,
        source: str = "manual",
        external_key: str | None = None,
        actor: str,
    ) -> int:
        """Create a ticket (status ``open``), with a ``created`` event and an audit row.

        Args:
            title: one line; untrusted text, stored with control characters
                made visible (:mod:`haloterm.textsafe`), as are the description
                and fields.
            type: ``incident``, ``request``, ``change`` ...
            priority: ``P1`` (most urgent) to ``P4``.
            description: free text.
            category: used by rules (``web``, ``db``).
            fields: extra JSON-serialisable facts (``host``, alert labels).
            source: where it came from (``manual``, ``alertmanager``).
            external_key: a unique key from the source (an alert group key).
            actor: who created it.

        Returns:
            The new ticket's id.

        Raises:
            ValueError: the priority is unknown, or the title is blank.
            StoreError: another ticket already has this external key.
        """
        _check_priority(priority)
        if not title.strip():
            raise ValueError("a ticket needs a title")
        now = self._now_text()
        title = visible_controls(title, one_line=True)
        description = visible_controls(description)
        fields = visible_tree(fields or {})

        def insert(conn: sqlite3.Connection) -> int:
            try:
                cursor = conn.execute(
                    "INSERT INTO tickets (title, description, type, priority, status,"
                    " category, fields, source, external_key, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
                    (
                        title,
                        description,
                        type,
                        priority,
                        category,
                        dumps(fields or {}),
                        source,
                        external_key,
                        now,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise StoreError(
                    f"{self.path}: a ticket with this external key already exists"
                ) from None
            ticket_id = int(cursor.lastrowid or 0)
            facts: dict[str, Any] = {"title": title, "type": type, "priority": priority}
            facts |= {"status": "open", "category": category, "source": source}
            _event(conn, ticket_id, "created", facts, actor, now)
            self._audit(conn, actor, "ticket.create", "ticket", ticket_id, facts)
            return ticket_id

        return self.write(insert)

    def update_ticket(
        self,
        ticket_id: int,
        *,
        actor: str,
        status: str | None = None,
        priority: str | None = None,
        title: str | None = None,
        category: str | None = None,
        fields: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> Ticket:
        """Change a ticket and record what changed.

        Records a ``status_changed``, ``priority_changed``, ``updated`` (title,
        category, fields) and ``note`` event as they apply, plus one audit row.
        ``fields`` is merged into the ticket's fields. Nothing is recorded when
        nothing changes.

        Returns:
            The ticket as it is after the change.

        Raises:
            NotFoundError: there is no such ticket.
            ValueError: the status or priority is unknown.
        """
        if priority is not None:
            _check_priority(priority)
        if status is not None and status not in _STATUSES:
            raise ValueError(f"unknown ticket status {status!r}")
        now = self._now_text()
        if title is not None:
            title = visible_controls(title, one_line=True)
        if fields is not None:
            fields = visible_tree(fields)
        if note is not None:
            note = visible_controls(note)

        def update(conn: sqlite3.Connection) -> Ticket:
            old = _ticket_or_raise(conn, ticket_id, self)
            changes: dict[str, Any] = {}
            if status is not None and status != old.status:
                changes["status"] = status
            if priority is not None and priority != old.priority:
                changes["priority"] = priority
            if title is not None and title != old.title:
                changes["title"] = title
            if category is not None and category != old.category:
                changes["category"] = category
            merged = {**old.fields, **(fields or {})}
            if merged != old.fields:
                changes["fields"] = merged
            if not changes and not note:
                return old
            self._apply_ticket_changes(conn, old, changes, note, actor, now)
            return _ticket_or_raise(conn, ticket_id, self)

        return self.write(update)

    def _apply_ticket_changes(
        self,
        conn: sqlite3.Connection,
        old: Ticket,
        changes: dict[str, Any],
        note: str | None,
        actor: str,
        now: str,
    ) -> None:
        values = {k: dumps(v) if k == "fields" else v for k, v in changes.items()}
        values["updated_at"] = now
        # Column names come from the fixed set above, never from the caller.
        assignments = ", ".join(f"{column} = ?" for column in values)
        conn.execute(
            f"UPDATE tickets SET {assignments} WHERE id = ?",
            [*values.values(), old.id],
        )
        before = old.model_dump(mode="json")
        for key in ("status", "priority"):
            if key in changes:
                data = {"from": before[key], "to": changes[key]}
                _event(conn, old.id, f"{key}_changed", data, actor, now)
        other = {
            key: {"from": before[key], "to": changes[key]}
            for key in ("title", "category", "fields")
            if key in changes
        }
        if other:
            _event(conn, old.id, "updated", {"changes": other}, actor, now)
        if note:
            _event(conn, old.id, "note", {"text": note}, actor, now)
        detail: dict[str, Any] = {"changes": sorted(changes)}
        if note:
            detail["note"] = note
        self._audit(conn, actor, "ticket.update", "ticket", old.id, detail)

    def add_ticket_event(
        self, ticket_id: int, *, kind: str, data: dict[str, Any], actor: str
    ) -> TicketEvent:
        """Record an event on a ticket without changing it (``resolved`` from an alert).

        Raises:
            NotFoundError: there is no such ticket.
        """
        now = self._now_text()
        data = visible_tree(data)

        def insert(conn: sqlite3.Connection) -> TicketEvent:
            _ticket_or_raise(conn, ticket_id, self)
            conn.execute(
                "UPDATE tickets SET updated_at = ? WHERE id = ?", (now, ticket_id)
            )
            event_id = _event(conn, ticket_id, kind, data, actor, now)
            row = conn.execute("SELECT * FROM ticket_events WHERE id = ?", (event_id,))
            return _ticket_event(row.fetchone())

        return self.write(insert)

    def get_ticket(self, ticket_id: int) -> Ticket | None:
        """One ticket, or None."""
        row = self._row("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
        return None if row is None else _ticket(row)

    def find_ticket_by_key(self, external_key: str) -> Ticket | None:
        """The ticket with this external key, or None."""
        row = self._row("SELECT * FROM tickets WHERE external_key = ?", (external_key,))
        return None if row is None else _ticket(row)

    def ticket_history(self, ticket_id: int) -> list[TicketEvent]:
        """A ticket's events, oldest first."""
        rows = self._rows(
            "SELECT * FROM ticket_events WHERE ticket_id = ? ORDER BY id", (ticket_id,)
        )
        return [_ticket_event(row) for row in rows]

    def ticket_events_since(
        self, after_id: int = 0, limit: int = 500
    ) -> list[TicketEvent]:
        """Events of every ticket with an id above ``after_id``, oldest first.

        The automation rules read the ticket event stream through this.
        """
        rows = self._rows(
            "SELECT * FROM ticket_events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [_ticket_event(row) for row in rows]

    def query_tickets(
        self, q: TicketQuery, *, matches: int | None = None
    ) -> TicketPage:
        """One page of the ticket list; filtering, sorting and paging all in SQL.

        Args:
            q: filters, sort, page size and the cursor of the page.
            matches: how many tickets match the filters, when known (the list's
                count). When no index serves both the filter and the order, it
                picks the cheaper plan: sort the matches (few of them) or walk the
                sort column's index and skip non-matches (many of them).

        Returns:
            The rows and, when more rows follow, the cursor of the next page
            (pass it back as ``q.after``).
        """
        walk = matches is not None and self._walk_sort_index(q, matches)
        sql, params = page_sql(q, walk_sort_index=walk)
        column, _ = _order(q.sort, q.descending)
        rows = self._rows(sql, params)
        tickets = [_ticket(row) for row in rows[: q.limit]]
        cursor = None
        if len(rows) > q.limit:
            last = rows[q.limit - 1]
            cursor = TicketCursor(value=last[column], id=last["id"])
        return TicketPage(rows=tickets, next_cursor=cursor)

    def _walk_sort_index(self, q: TicketQuery, matches: int) -> bool:
        # Sorting costs about one row read per match; walking the sort index costs
        # about page / density rows. Only worth asking when the plan would sort.
        total = _int(
            self._row("SELECT seq FROM sqlite_sequence WHERE name = 'tickets'")
        )
        if q.text.strip() or matches * matches <= (q.limit + 1) * total:
            # Words in titles match in clumps as often as not: leave those to SQLite.
            return False
        shape = (_shape(q), q.after is not None)
        plans: dict[tuple[Any, ...], bool] = self.__dict__.setdefault(
            "_ticket_plans", {}
        )
        with self._count_lock:
            sorts = plans.get(shape)
        if sorts is None:
            sql, params = page_sql(q)
            plan = self._rows("EXPLAIN QUERY PLAN " + sql, params)
            sorts = any("TEMP B-TREE" in str(row["detail"]) for row in plan)
            with self._count_lock:
                plans[shape] = sorts
        return sorts

    def count_tickets(self, q: TicketQuery) -> int:
        """How many tickets match the query's filters (its page is ignored).

        Cached per filter until any process commits a change to the store.
        """
        key = (q.filter_key(), self.data_version())
        with self._count_lock:
            if key in self._count_cache:
                return self._count_cache[key]
        where, params = _where(q)
        row = self._row(
            f"SELECT count(*) FROM tickets WHERE {' AND '.join(where)}", params
        )
        count = int(row[0]) if row is not None else 0
        with self._count_lock:
            if len(self._count_cache) >= _COUNT_CACHE_SIZE:
                self._count_cache.clear()
            self._count_cache[key] = count
        return count

    def console_stamp(self) -> ConsoleStamp:
        """Where tickets, runs and runbooks stand, in a few index lookups.

        Returns:
            A :class:`ConsoleStamp`; compare it with an earlier one.
        """
        conn = self._reader()
        seq = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'tickets'"
        ).fetchone()
        events = conn.execute("SELECT max(id) FROM ticket_events").fetchone()
        runs = conn.execute(
            "SELECT max(id), (SELECT count(*) FROM executions WHERE status IN"
            f" ({', '.join('?' for _ in _UNFINISHED)})) FROM executions",
            _UNFINISHED,
        ).fetchone()
        versions = conn.execute("SELECT max(id) FROM runbook_versions").fetchone()
        return ConsoleStamp(
            tickets=(_int(seq), _int(events)),
            runs=(_int(runs), int(runs[1] or 0) if runs else 0),
            runbooks=_int(versions),
        )

    def latest_runs(self, ticket_ids: Sequence[int]) -> dict[int, Execution]:
        """The newest execution of each ticket that has one, in one query.

        Args:
            ticket_ids: the tickets of a page (a few hundred at most).

        Returns:
            Ticket id to its newest execution; tickets without runs are absent.
        """
        if not ticket_ids:
            return {}
        marks = ", ".join("?" for _ in ticket_ids)
        # The inner query walks ix_executions_ticket (ticket_id, id): one seek per
        # ticket for its highest id, then one rowid lookup per run found.
        rows = self._rows(
            "SELECT e.* FROM executions AS e JOIN"
            " (SELECT max(id) AS id FROM executions"
            f" WHERE ticket_id IN ({marks}) GROUP BY ticket_id) AS newest"
            " ON e.id = newest.id",
            list(ticket_ids),
        )
        runs = [_execution(row) for row in rows]
        return {run.ticket_id: run for run in runs if run.ticket_id is not None}


def _int(row: Row | None) -> int:
    return int(row[0] or 0) if row is not None else 0


def page_sql(q: TicketQuery, *, walk_sort_index: bool = False) -> tuple[str, list[Any]]:
    """The SQL and bound parameters of one page of a ticket query (one row extra,
    to tell whether another page follows).

    With ``walk_sort_index`` the filter columns are kept off every index (``+col``),
    so SQLite reads rows in the sort column's index order and stops after a page,
    instead of collecting every match and sorting it.
    """
    where, params = _where(q, unindexed=walk_sort_index)
    column, direction = _order(q.sort, q.descending)
    if q.after is not None:
        op = "<" if direction == "DESC" else ">"
        if column == "id":
            where.append(f"id {op} ?")
            params.append(q.after.id)
        else:
            where.append(f"({column}, id) {op} (?, ?)")
            params += [_cursor_value(column, q.after.value), q.after.id]
    sql = (
        f"SELECT * FROM tickets WHERE {' AND '.join(where)}"
        f" ORDER BY {column} {direction}, id {direction} LIMIT ?"
    )
    return sql, [*params, q.limit + 1]


def parse_ticket_filter(text: str) -> TicketQuery:
    """Turn the filter bar's text into a query.

    ``priority:P1,P2 status:open disk full`` filters on priority and status and
    looks for "disk" and "full" in titles. Keys: ``priority``, ``status``, ``type``,
    ``category``, ``sort`` (``updated_at``, ``created_at``, ``priority``, ``id``) and
    ``order`` (``asc``/``desc``). Anything else is free text (titles hold colons:
    ``[FIRING:1]``, ``app-03:8080``).

    Raises:
        ValueError: a priority, status, sort or order that does not exist, named
            with the values that do (a typo must not read as "no tickets").
    """
    terms: dict[str, list[str]] = {}
    words: list[str] = []
    extra: dict[str, Any] = {}
    for token in text.split():
        key, sep, value = token.partition(":")
        key = key.lower()
        values = [v for v in value.split(",") if v]
        if sep and key in _FILTER_KEYS and values:
            if key == "priority":
                values = [v.upper() for v in values]
                _check_terms(key, values, PRIORITIES)
            elif key in ("status", "type"):
                values = [v.lower() for v in values]
                if key == "status":
                    _check_terms(key, values, sorted(_STATUSES))
            terms.setdefault(key, []).extend(values)
        elif sep and key == "sort":
            _check_terms(key, [value], get_args(TicketSort))
            extra["sort"] = value
        elif sep and key == "order":
            _check_terms(key, [value.lower()], ("asc", "desc"))
            extra["descending"] = value.lower() == "desc"
        else:
            words.append(token)
    return TicketQuery(text=" ".join(words), **terms, **extra)


def _check_terms(key: str, values: Sequence[str], known: Sequence[str]) -> None:
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(
            f"{key}:{','.join(unknown)} matches nothing: {key} is one of "
            + ", ".join(known)
        )


def _check_priority(priority: str) -> None:
    if priority not in PRIORITIES:
        raise ValueError(
            f"unknown priority {priority!r}: use one of {', '.join(PRIORITIES)}"
        )


def _shape(q: TicketQuery) -> tuple[Any, ...]:
    # What decides the query plan: which filters (and how many values), the order.
    filters = tuple(
        None if getattr(q, key) is None else len(getattr(q, key))
        for key in _FILTER_KEYS
    )
    return (filters, len(q.text.split()), q.sort, q.descending)


def _where(q: TicketQuery, *, unindexed: bool = False) -> tuple[list[str], list[Any]]:
    where: list[str] = ["1 = 1"]
    plus = "+" if unindexed else ""
    params: list[Any] = []
    for key in _FILTER_KEYS:
        values: list[str] | None = getattr(q, key)
        if values is None:
            continue
        if not values:
            where.append("0 = 1")
            continue
        # Only the count of placeholders comes from the values; they are bound.
        where.append(f"{plus}{key} IN ({', '.join('?' for _ in values)})")
        params += values
    for word in q.text.split():
        where.append("title LIKE ? ESCAPE '\\'")
        params.append("%" + _like_escape(word) + "%")
    return where, params


def _cursor_value(column: str, value: str | int | None) -> str | int | None:
    # Times compare as text, so a cursor written with isoformat() (which drops
    # zero microseconds) is brought to the stored form first.
    if column.endswith("_at") and isinstance(value, str):
        try:
            return to_text(datetime.fromisoformat(value))
        except ValueError:
            return value
    return value


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _order(sort: TicketSort, descending: bool) -> tuple[str, str]:
    column = {"updated_at": "updated_at", "created_at": "created_at"}.get(sort, sort)
    if column == "priority":
        # "P1" sorts before "P2" as text, and P1 is the highest priority.
        descending = not descending
    return column, "DESC" if descending else "ASC"


def _event(
    conn: sqlite3.Connection,
    ticket_id: int,
    kind: str,
    data: dict[str, Any],
    actor: str,
    at: str,
) -> int:
    cursor = conn.execute(
        "INSERT INTO ticket_events (ticket_id, kind, data, actor, at)"
        " VALUES (?, ?, ?, ?, ?)",
        (ticket_id, kind, dumps(data), actor, at),
    )
    return int(cursor.lastrowid or 0)


def _ticket_or_raise(
    conn: sqlite3.Connection, ticket_id: int, store: StoreCore
) -> Ticket:
    row = conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"{store.path}: no ticket #{ticket_id}")
    return _ticket(row)


def _ticket(row: Row) -> Ticket:
    return Ticket(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        type=row["type"],
        priority=row["priority"],
        status=row["status"],
        category=row["category"],
        fields=loads(row["fields"], {}),
        source=row["source"],
        external_key=row["external_key"],
        created_at=parse_time(row["created_at"]),
        updated_at=parse_time(row["updated_at"]),
    )


def _ticket_event(row: Row) -> TicketEvent:
    return TicketEvent(
        id=row["id"],
        ticket_id=row["ticket_id"],
        kind=row["kind"],
        data=loads(row["data"], {}),
        actor=row["actor"],
        at=parse_time(row["at"]),
    )
