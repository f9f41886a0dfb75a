"""Queries behind the console's ticket list: newest run per ticket in one query, the
console stamp, and the plan chosen when no index serves both filter and order."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from haloterm.engine.events import LogLine
from haloterm.storage import Store, TicketQuery
from haloterm.storage.tickets import page_sql
from tests.store.conftest import FakeClock


def _run(store: Store, ticket_id: int | None) -> int:
    return store.create_execution(
        runbook="demo",
        version=1,
        params={},
        secret_params=[],
        trigger="manual",
        operator="alice",
        ticket_id=ticket_id,
        step_ids=["s"],
    ).id


def test_latest_runs_gives_each_ticket_its_newest_run(store: Store) -> None:
    first = store.create_ticket(title="a", actor="alice")
    second = store.create_ticket(title="b", actor="alice")
    alone = store.create_ticket(title="c", actor="alice")
    _run(store, first)
    newest_first = _run(store, first)
    only_second = _run(store, second)
    _run(store, None)
    runs = store.latest_runs([first, second, alone, 999])
    assert {k: v.id for k, v in runs.items()} == {
        first: newest_first,
        second: only_second,
    }
    assert store.latest_runs([]) == {}


def test_console_stamp_moves_with_tickets_and_runs_not_logs(
    store: Store, clock: FakeClock
) -> None:
    ticket = store.create_ticket(title="a", actor="alice")
    before = store.console_stamp()
    # The clock stands still: the stamp must not rely on updated_at moving.
    store.update_ticket(ticket, actor="bob", status="acknowledged")
    after_update = store.console_stamp()
    assert after_update.tickets != before.tickets
    assert after_update.runs == before.runs

    execution = _run(store, ticket)
    started = store.console_stamp()
    assert started.runs != after_update.runs
    assert started.tickets == after_update.tickets

    at = clock()
    store.append_logs(
        [LogLine(execution, "s", "", "stdout", seq, at, "x") for seq in range(50)]
    )
    store.flush()
    assert store.console_stamp() == started

    store.update_execution(execution, status="running")
    store.update_execution(execution, status="succeeded")
    assert store.console_stamp().runs != started.runs


def _bulk(store: Store, count: int) -> None:
    rows = [
        (
            f"t{i}",
            ["P1", "P2", "P3", "P4"][i % 4],
            ["open", "resolved"][i % 2],
            ["incident", "request"][i % 3 == 0],
            f"2025-0{1 + i % 5}-{1 + i % 28:02d}T{i % 24:02d}:00:00.000000+00:00",
            f"2025-0{1 + i % 4}-{1 + i % 27:02d}T{i % 23:02d}:00:00.000000+00:00",
        )
        for i in range(count)
    ]

    def insert(conn: Any) -> None:
        conn.executemany(
            "INSERT INTO tickets (title, priority, status, type, description, fields,"
            " source, created_at, updated_at) VALUES (?, ?, ?, ?, '', '{}', 'manual',"
            " ?, ?)",
            rows,
        )

    store.write(insert)


FILTERS: list[dict[str, Any]] = [
    {"type": ["incident"]},
    {"priority": ["P1", "P2"]},
    {"status": ["open"], "type": ["incident"]},
]


@pytest.mark.parametrize(
    ("filters", "sort", "descending"),
    list(itertools.product(FILTERS, ["created_at", "priority", "updated_at"], [1, 0])),
)
def test_walking_the_sort_index_gives_the_same_pages(
    store: Store, filters: dict[str, Any], sort: Any, descending: int
) -> None:
    _bulk(store, 1500)
    q = TicketQuery(**filters, sort=sort, descending=bool(descending), limit=20)
    matches = store.count_tickets(q)
    walked, sorted_ = store.query_tickets(q, matches=matches), store.query_tickets(q)
    for _ in range(3):
        assert [t.id for t in walked.rows] == [t.id for t in sorted_.rows]
        assert walked.next_cursor == sorted_.next_cursor
        assert walked.next_cursor is not None
        q = q.model_copy(update={"after": walked.next_cursor})
        walked = store.query_tickets(q, matches=matches)
        sorted_ = store.query_tickets(q)


def test_many_matches_walk_the_sort_index_instead_of_sorting(store: Store) -> None:
    _bulk(store, 1500)
    q = TicketQuery(type=["incident"], sort="created_at", limit=20)
    plan = " | ".join(
        str(row["detail"])
        for row in store._rows("EXPLAIN QUERY PLAN " + page_sql(q)[0], page_sql(q)[1])
    )
    assert "TEMP B-TREE" in plan
    assert store._walk_sort_index(q, matches=1000)
    sql, params = page_sql(q, walk_sort_index=True)
    plan = " | ".join(
        str(row["detail"]) for row in store._rows("EXPLAIN QUERY PLAN " + sql, params)
    )
    assert "TEMP B-TREE" not in plan and "ix_tickets_created" in plan, plan
    # Few matches: sorting them is cheaper than skipping most of the index.
    assert not store._walk_sort_index(q, matches=30)
    # An index serves priority:P1 ordered by last update: nothing to change.
    served = TicketQuery(priority=["P1"], limit=20)
    assert not store._walk_sort_index(served, matches=1000)
