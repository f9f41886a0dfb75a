"""Opening, migrating and reopening the store file."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from haloterm.storage import SCHEMA_VERSION, Store, StoreError
from haloterm.storage.schema import MIGRATIONS
from tests.store.conftest import FakeClock

TABLES = {
    "meta",
    "migrations",
    "tickets",
    "ticket_events",
    "runbooks",
    "runbook_versions",
    "executions",
    "step_runs",
    "log_lines",
    "approvals",
    "owners",
    "audit",
}


def test_open_migrates_an_empty_file_in_wal_mode(
    db_path: Path, clock: FakeClock
) -> None:
    assert not db_path.parent.exists()
    with Store.open(db_path, clock=clock):
        pass
    conn = sqlite3.connect(db_path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        applied = conn.execute("SELECT name, applied_at FROM migrations").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    assert TABLES <= names
    assert [name for name, _ in applied] == [name for name, _ in MIGRATIONS]
    assert applied[0][1] == "2026-03-29T00:30:00.000000+00:00"
    assert mode == "wal"
    assert version == SCHEMA_VERSION


def test_connections_use_the_documented_pragmas(store: Store) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[int, int, int]:
        return (
            conn.execute("PRAGMA busy_timeout").fetchone()[0],
            conn.execute("PRAGMA foreign_keys").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        )

    assert store.write(pragmas) == (10_000, 1, 1)
    reader = store._reader()
    assert reader.execute("PRAGMA query_only").fetchone()[0] == 1
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("DELETE FROM tickets")


def test_reopen_keeps_data(db_path: Path, clock: FakeClock) -> None:
    with Store.open(db_path, clock=clock) as store:
        ticket_id = store.create_ticket(title="kept", actor="alice")
    with Store.open(db_path, clock=clock) as store:
        ticket = store.get_ticket(ticket_id)
        assert ticket is not None and ticket.title == "kept"
        assert len(store.list_audit()) == 1


def test_a_newer_schema_is_a_clear_error(db_path: Path, clock: FakeClock) -> None:
    with Store.open(db_path, clock=clock):
        pass
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(
            "INSERT INTO migrations (name, applied_at) VALUES ('9999_future', 'x')"
        )
    conn.close()
    with pytest.raises(StoreError, match="newer than this haloterm") as caught:
        Store.open(db_path, clock=clock)
    assert str(db_path) in str(caught.value)


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("this is not a database\n" * 100)
    with pytest.raises(StoreError, match="cannot open the store") as caught:
        Store.open(path)
    assert str(path) in str(caught.value)


def test_many_openers_of_a_fresh_file_migrate_once(db_path: Path) -> None:
    barrier = threading.Barrier(6)
    stores: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            stores.append(Store.open(db_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in stores:
        opened.close()
    assert errors == []
    conn = sqlite3.connect(db_path)
    count = conn.execute("SELECT count(*) FROM migrations").fetchone()[0]
    conn.close()
    assert count == len(MIGRATIONS)


def test_a_closed_store_refuses_work(db_path: Path) -> None:
    store = Store.open(db_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.create_ticket(title="late", actor="alice")
    with pytest.raises(StoreError, match="closed"):
        store.get_ticket(1)


def test_upgrading_a_first_version_file_keeps_its_log_lines(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(
        "CREATE TABLE migrations (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)"
    )
    name, statements = MIGRATIONS[0]
    for statement in statements:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO migrations (name, applied_at) VALUES (?, 'then')", (name,)
    )
    conn.executemany(
        "INSERT INTO log_lines (execution_id, seq, step_id, host, stream, at, text)"
        " VALUES (?, ?, 's', '', 'stdout', '2026-03-29T00:30:00.000000+00:00', ?)",
        [(1, 1, "one"), (1, 2, "two"), (2, 1, "other")],
    )
    conn.close()
    with Store.open(db_path) as store:
        assert [line.text for line in store.get_logs(1)] == ["one", "two"]
        assert store.log_count(2) == 1
        store.append_logs(store.get_logs(1)[:1])
        store.flush()
        assert store.log_count(1) == 2


def test_a_new_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "s.db"
    with Store.open(path) as store:
        store.create_ticket(title="t", actor="alice")
        for file in path.parent.iterdir():
            assert file.stat().st_mode & 0o077 == 0, file.name
