"""The writer thread: jobs, log batches, flush, inline calls and busy retries."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from haloterm.engine.events import LogLine
from haloterm.storage import Store, StoreError
from tests.store.conftest import FakeClock

AT = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def lines(execution_id: int, start: int, count: int, step: str = "s1") -> list[LogLine]:
    return [
        LogLine(execution_id, step, "", "stdout", seq, AT, f"line {seq}")
        for seq in range(start, start + count)
    ]


def count_rows(store: Store, table: str) -> int:
    # Table names here are test constants.
    row = store._row(f"SELECT count(*) FROM {table}")
    assert row is not None
    return int(row[0])


def test_write_returns_the_result_after_commit(store: Store) -> None:
    def insert(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
        return 42

    assert store.write(insert) == 42
    assert store._row("SELECT value FROM meta WHERE key = 'k'")[0] == "v"  # type: ignore[index]


def test_a_failing_job_rolls_back_only_its_own_changes(store: Store) -> None:
    def good(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('good', '1')")

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('bad', '1')")
        raise RuntimeError("nope")

    gate = threading.Event()
    blocker = store.submit(lambda conn: gate.wait(5))
    first, second, third = store.submit(good), store.submit(bad), store.submit(good)
    gate.set()
    blocker.result()
    first.result()
    with pytest.raises(RuntimeError, match="nope"):
        second.result()
    with pytest.raises(sqlite3.IntegrityError):
        third.result()
    keys = [r[0] for r in store._rows("SELECT key FROM meta ORDER BY key")]
    assert keys == ["good"]


def test_a_job_that_ends_the_transaction_fails_alone(store: Store) -> None:
    def rogue(conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def fine(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO meta (key, value) VALUES ('after', '1')")
        return "ok"

    gate = threading.Event()
    store.submit(lambda conn: gate.wait(5))
    failing, later = store.submit(rogue), store.submit(fine)
    gate.set()
    with pytest.raises(StoreError, match="ended its transaction"):
        failing.result()
    assert later.result() == "ok"


def test_calls_from_the_writer_thread_run_inline(store: Store) -> None:
    def outer(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO meta (key, value) VALUES ('outer', '1')")
        return store.audit(
            actor="alice", action="x.inline", target_type="t", target_id=1
        )

    audit_id = store.write(outer)
    assert [a.id for a in store.list_audit()] == [audit_id]


async def test_submit_and_call_from_an_event_loop(store: Store) -> None:
    future = store.submit(lambda conn: conn.execute("SELECT 7").fetchone()[0])
    assert await asyncio.wrap_future(future) == 7
    ticket_id = await store.call(store.create_ticket, title="async", actor="alice")
    ticket = await store.call(store.get_ticket, ticket_id)
    assert ticket is not None and ticket.title == "async"


def test_append_logs_and_flush(store: Store) -> None:
    store.append_logs(lines(1, 1, 5000))
    store.append_logs([])
    store.flush()
    assert store.log_count(1) == 5000
    assert store.lines_written == 5000
    got = store.get_logs(1, after_seq=4990)
    assert [line.seq for line in got] == list(range(4991, 5001))
    assert got[0] == LogLine(1, "s1", "", "stdout", 4991, AT, "line 4991")


def test_log_lines_are_committed_within_a_batch_interval(store: Store) -> None:
    store.append_logs(lines(1, 1, 3))
    deadline = time.monotonic() + 5
    while store.log_count(1) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert store.log_count(1) == 3


def test_a_line_sqlite_cannot_encode_does_not_cost_its_batch(store: Store) -> None:
    batch = lines(1, 1, 3)
    batch.insert(1, LogLine(1, "s1", "", "stdout", 99, AT, "half \udc80 char"))
    store.append_logs(batch)
    store.flush()
    assert store.log_count(1) == 4
    assert store.get_logs(1, after_seq=98)[0].text == "half ? char"


def test_close_drains_queued_lines(db_path: Path, clock: FakeClock) -> None:
    store = Store.open(db_path, clock=clock, batch_interval=5.0)
    store.append_logs(lines(3, 1, 10))
    store.close()
    with Store.open(db_path, clock=clock) as again:
        assert again.log_count(3) == 10


def test_a_locked_database_is_retried_and_logged(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(db_path, busy_timeout=0.1)
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.6, lambda: holder.execute("COMMIT"))
    caplog.set_level(logging.WARNING, logger="haloterm.storage.writer")
    try:
        timer.start()
        ticket_id = store.create_ticket(title="eventually", actor="alice")
    finally:
        timer.join()
        holder.close()
    assert store.get_ticket(ticket_id) is not None
    assert any("busy" in r.getMessage() for r in caplog.records)
    store.close()


def test_a_database_locked_for_too_long_fails_the_write_cleanly(db_path: Path) -> None:
    store = Store.open(db_path, busy_timeout=0.05, busy_retry_for=0.2)
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="write failed") as caught:
            store.create_ticket(title="never", actor="alice")
        assert str(db_path) in str(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.create_ticket(title="later", actor="alice") == 1
    store.close()


def test_a_repeated_seq_keeps_the_first_line_and_the_rest_of_the_batch(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.append_logs(lines(1, 1, 3))
    store.flush()
    caplog.set_level(logging.WARNING, logger="haloterm.storage.writer")
    repeat = LogLine(1, "s1", "", "stdout", 2, AT, "again")
    store.append_logs([repeat, *lines(1, 4, 2)])
    store.flush()
    assert [x.text for x in store.get_logs(1)] == [f"line {n}" for n in range(1, 6)]
    assert any("repeated" in r.getMessage() for r in caplog.records)
