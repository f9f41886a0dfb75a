"""Tickets: history, audit, the filter bar, and keyset paging in SQL."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from haloterm.models import Ticket
from haloterm.storage import (
    NotFoundError,
    Store,
    StoreError,
    TicketCursor,
    TicketQuery,
    parse_ticket_filter,
)
from haloterm.storage.tickets import page_sql
from tests.store.conftest import FakeClock

HOSTILE = [
    "Disk full on [/var] again",
    "[bold]URGENT[/bold]",
    "'; DROP TABLE tickets; --",
    "$(touch /tmp/pwned); echo hi",
    "100% full_disk",
]


def test_create_records_an_event_and_an_audit_row(
    store: Store, clock: FakeClock
) -> None:
    ticket_id = store.create_ticket(
        title="Disk full",
        priority="P2",
        category="disk",
        fields={"host": "db-02"},
        source="alertmanager",
        external_key="am:1",
        actor="alice",
    )
    ticket = store.get_ticket(ticket_id)
    assert ticket is not None
    assert (ticket.status, ticket.priority, ticket.fields) == (
        "open",
        "P2",
        {"host": "db-02"},
    )
    assert ticket.created_at == clock()
    assert store.find_ticket_by_key("am:1") == ticket
    assert store.find_ticket_by_key("am:2") is None
    [event] = store.ticket_history(ticket_id)
    assert (event.kind, event.actor, event.data["priority"]) == (
        "created",
        "alice",
        "P2",
    )
    [audit] = store.list_audit(target_type="ticket", target_id=ticket_id)
    assert (audit.action, audit.actor) == ("ticket.create", "alice")


def test_update_records_one_event_per_kind(store: Store, clock: FakeClock) -> None:
    ticket_id = store.create_ticket(title="old", fields={"a": 1}, actor="alice")
    clock.advance(60)
    ticket = store.update_ticket(
        ticket_id,
        actor="bob",
        status="acknowledged",
        priority="P1",
        title="new",
        fields={"b": 2},
        note="on it",
    )
    assert (ticket.title, ticket.status, ticket.priority) == (
        "new",
        "acknowledged",
        "P1",
    )
    assert ticket.fields == {"a": 1, "b": 2}
    assert ticket.updated_at == clock() != ticket.created_at
    kinds = [(e.kind, e.actor) for e in store.ticket_history(ticket_id)]
    assert kinds == [
        ("created", "alice"),
        ("status_changed", "bob"),
        ("priority_changed", "bob"),
        ("updated", "bob"),
        ("note", "bob"),
    ]
    status = store.ticket_history(ticket_id)[1]
    assert status.data == {"from": "open", "to": "acknowledged"}
    assert len(store.list_audit(target_type="ticket")) == 2


def test_an_update_that_changes_nothing_records_nothing(store: Store) -> None:
    ticket_id = store.create_ticket(title="same", priority="P3", actor="alice")
    store.update_ticket(ticket_id, actor="bob", priority="P3", title="same")
    assert len(store.ticket_history(ticket_id)) == 1


def test_update_errors(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no ticket #9"):
        store.update_ticket(9, actor="bob", note="x")
    ticket_id = store.create_ticket(title="t", actor="alice")
    with pytest.raises(ValueError, match="priority"):
        store.update_ticket(ticket_id, actor="bob", priority="P9")
    with pytest.raises(ValueError, match="status"):
        store.update_ticket(ticket_id, actor="bob", status="gone")
    store.create_ticket(title="a", external_key="k", actor="alice")
    with pytest.raises(StoreError, match="external key"):
        store.create_ticket(title="b", external_key="k", actor="alice")


def test_untrusted_titles_are_data(store: Store) -> None:
    ids = [store.create_ticket(title=title, actor="alice") for title in HOSTILE]
    assert [store.get_ticket(i).title for i in ids] == HOSTILE  # type: ignore[union-attr]
    page = store.query_tickets(TicketQuery(text="DROP TABLE", sort="id"))
    assert [t.title for t in page.rows] == [HOSTILE[2]]
    # LIKE wildcards in the filter text match themselves only.
    assert [t.title for t in store.query_tickets(TicketQuery(text="100%")).rows] == [
        HOSTILE[4]
    ]
    assert store.query_tickets(TicketQuery(text="%")).rows[0].title == HOSTILE[4]
    assert store.count_tickets(TicketQuery(text="_")) == 1


def test_add_ticket_event(store: Store) -> None:
    ticket_id = store.create_ticket(title="t", actor="alice")
    event = store.add_ticket_event(
        ticket_id, kind="resolved", data={"alert": "ApiDown"}, actor="alertmanager"
    )
    assert store.ticket_history(ticket_id)[-1] == event
    assert [e.kind for e in store.ticket_events_since(0)] == ["created", "resolved"]
    assert store.ticket_events_since(event.id) == []


def test_parse_ticket_filter() -> None:
    q = parse_ticket_filter("priority:p1,P2 status:Open disk  full type:incident")
    assert q.priority == ["P1", "P2"]
    assert q.status == ["open"]
    assert q.type == ["incident"]
    assert q.text == "disk full"
    q = parse_ticket_filter("category:web sort:priority order:asc host:db-02 priority:")
    assert (q.category, q.sort, q.descending) == (["web"], "priority", False)
    assert q.text == "host:db-02 priority:"
    assert parse_ticket_filter("") == TicketQuery()
    assert (
        parse_ticket_filter("[FIRING:1] app-03:8080").text == "[FIRING:1] app-03:8080"
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("status:opn", "status is one of acknowledged, closed"),
        ("priority:P1,P9", "priority:P9 matches nothing"),
        ("sort:size", "sort is one of updated_at"),
        ("order:up", "order is one of asc, desc"),
    ],
)
def test_a_filter_typo_is_an_error_not_an_empty_list(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_ticket_filter(text)


def _fill(store: Store, count: int) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        created = base + timedelta(minutes=i)
        # Many equal update times, so ties between sort values are exercised.
        updated = base + timedelta(hours=(i * 7919) % 500)
        rows.append(
            (
                f"ticket {i} {'disk' if i % 3 == 0 else 'net'}",
                "incident" if i % 2 else "request",
                f"P{i % 4 + 1}",
                ["open", "acknowledged", "resolved"][i % 3],
                ["web", "db", None][i % 3],
                created.isoformat(timespec="microseconds"),
                updated.isoformat(timespec="microseconds"),
            )
        )

    def insert(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO tickets (title, type, priority, status, category,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    store.write(insert)


def _walk(store: Store, q: TicketQuery) -> list[int]:
    seen: list[int] = []
    page = store.query_tickets(q)
    while True:
        assert len(page.rows) <= q.limit
        seen += [t.id for t in page.rows]
        if page.next_cursor is None:
            return seen
        page = store.query_tickets(q.model_copy(update={"after": page.next_cursor}))


@pytest.mark.parametrize(
    ("text", "sort", "descending"),
    [
        ("", "updated_at", True),
        ("priority:P1 status:open", "updated_at", True),
        ("status:open,acknowledged disk", "created_at", False),
        ("category:web", "priority", True),
        ("type:request", "priority", False),
        ("priority:P2,P3", "id", True),
    ],
)
def test_keyset_paging_matches_a_full_sort(
    store: Store, text: str, sort: str, descending: bool
) -> None:
    _fill(store, 3000)
    q = parse_ticket_filter(text).model_copy(
        update={"sort": sort, "descending": descending, "limit": 97}
    )
    in_one_page = store.query_tickets(q.model_copy(update={"limit": 10_000})).rows
    matching = [t for t in _all(store) if _matches(t, q)]
    assert sorted(t.id for t in in_one_page) == sorted(t.id for t in matching)

    def key(t: Ticket) -> tuple[Any, int]:
        return (getattr(t, sort), t.id)

    flip = descending if sort != "priority" else not descending
    ordered = [t.id for t in sorted(matching, key=key, reverse=flip)]
    assert _walk(store, q) == ordered
    assert store.count_tickets(q) == len(ordered)


def _all(store: Store) -> list[Ticket]:
    return list(store.query_tickets(TicketQuery(limit=10_000, sort="id")).rows)


def _matches(ticket: Ticket, q: TicketQuery) -> bool:
    for key in ("priority", "status", "type", "category"):
        allowed = getattr(q, key)
        if allowed is not None and getattr(ticket, key) not in allowed:
            return False
    return all(word.lower() in ticket.title.lower() for word in q.text.split())


def test_a_cursor_written_with_isoformat_still_pages(store: Store) -> None:
    _fill(store, 50)
    q = TicketQuery(sort="updated_at", limit=10)
    first = store.query_tickets(q)
    last = first.rows[-1]
    cursor = TicketCursor(value=last.updated_at.isoformat(), id=last.id)
    second = store.query_tickets(q.model_copy(update={"after": cursor}))
    assert second.rows[0].id not in {t.id for t in first.rows}
    assert [t.id for t in second.rows] == _walk(store, q)[10:20]


@pytest.mark.parametrize(
    "text",
    [
        "priority:P1",
        "status:open",
        "",
        "type:incident",
        "category:db",
        "priority:P1 status:open",
    ],
)
def test_ticket_list_pages_read_an_index_in_order(store: Store, text: str) -> None:
    _fill(store, 2000)
    store.write(lambda conn: conn.execute("ANALYZE"))
    first = parse_ticket_filter(text)
    page = store.query_tickets(first.model_copy(update={"limit": 10}))
    after = first.model_copy(update={"after": page.next_cursor})
    for q in (first, after):
        sql, params = page_sql(q)
        plan = store._rows("EXPLAIN QUERY PLAN " + sql, params)
        detail = " | ".join(str(row["detail"]) for row in plan)
        assert "USING INDEX" in detail or "USING COVERING INDEX" in detail, detail
        assert "TEMP B-TREE" not in detail, detail


def test_count_is_cached_until_someone_commits(store: Store, second: Store) -> None:
    q = TicketQuery(priority=["P1"])
    store.create_ticket(title="a", priority="P1", actor="alice")
    assert store.count_tickets(q) == 1
    second.create_ticket(title="b", priority="P1", actor="bob")
    assert store.count_tickets(q) == 2
    store.create_ticket(title="c", priority="P1", actor="alice")
    assert store.count_tickets(q) == 3
    assert store.count_tickets(TicketQuery(priority=[])) == 0


@pytest.mark.parametrize("title", ["", "   ", "\t\n"])
def test_a_ticket_needs_a_title(store: Store, title: str) -> None:
    with pytest.raises(ValueError, match="needs a title"):
        store.create_ticket(title=title, actor="alice")
    assert store.count_tickets(TicketQuery()) == 0
