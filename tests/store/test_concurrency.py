"""C25: concurrent writers, two consoles on one file, and no "database is locked"."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from haloterm.engine.events import LogLine
from haloterm.storage import Store, TicketQuery

AT = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_a_deferred_read_that_upgrades_fails_at_once(db_path: Path) -> None:
    """The hazard the writer exists for: busy_timeout cannot save this transaction."""
    with Store.open(db_path):
        pass
    a = sqlite3.connect(db_path, isolation_level=None, timeout=5)
    b = sqlite3.connect(db_path, isolation_level=None, timeout=5)
    try:
        a.execute("BEGIN")
        a.execute("SELECT count(*) FROM meta").fetchone()
        b.execute("INSERT INTO meta (key, value) VALUES ('b', '1')")
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            a.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
        assert time.monotonic() - started < 1.0
        a.execute("ROLLBACK")
    finally:
        a.close()
        b.close()


def test_read_then_write_through_two_stores_never_loses_a_write(
    store: Store, second: Store
) -> None:
    """The same read-then-upgrade pattern, as write jobs from two consoles."""

    def read_then_insert(conn: sqlite3.Connection) -> int:
        seen = int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])
        conn.execute(
            "INSERT INTO audit (at, actor, action, target_type, target_id)"
            " VALUES ('2026-03-29T00:30:00+00:00', 'x', 'count', 'n', ?)",
            (str(seen),),
        )
        return seen

    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(target: Store) -> None:
        barrier.wait()
        try:
            for _ in range(50):
                target.write(read_then_insert)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in [store, second] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seen = sorted(int(r.target_id) for r in store.list_audit(limit=10_000))
    # Every job saw every earlier commit: the counts are exactly 0..399.
    assert seen == list(range(400))


def test_two_consoles_see_each_others_writes(store: Store, second: Store) -> None:
    before = store.data_version()
    ticket_id = second.create_ticket(title="from the second console", actor="bob")
    assert store.data_version() != before
    ticket = store.get_ticket(ticket_id)
    assert ticket is not None and ticket.title == "from the second console"

    version = second.data_version()
    store.update_ticket(ticket_id, actor="alice", status="acknowledged")
    assert second.data_version() != version
    seen = second.get_ticket(ticket_id)
    assert seen is not None and seen.status == "acknowledged"
    assert [e.actor for e in second.ticket_history(ticket_id)] == ["bob", "alice"]


def test_data_version_is_stable_without_commits(store: Store) -> None:
    store.create_ticket(title="x", actor="alice")
    version = store.data_version()
    store.get_ticket(1)
    store.query_tickets(TicketQuery())
    assert store.data_version() == version


EDITOR = """
import random, sys
from pathlib import Path
from haloterm.storage import Store
rng = random.Random(7)
with Store.open(Path(sys.argv[1])) as store:
    for _ in range(int(sys.argv[2])):
        store.update_ticket(rng.randint(1, 20), actor="carol", note="other process")
"""


def test_load_with_a_second_process_editing(db_path: Path) -> None:
    """A real second process edits tickets while this one streams logs."""
    with Store.open(db_path) as runs:
        for i in range(20):
            runs.create_ticket(title=f"t{i}", actor="bob")
        editor = subprocess.Popen(
            [sys.executable, "-c", EDITOR, str(db_path), "300"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in range(1, 20_001, 500):
            runs.append_logs(
                [
                    LogLine(1, "s", "", "stdout", n, AT, "x")
                    for n in range(start, start + 500)
                ]
            )
            runs.audit(
                actor="engine", action="step.note", target_type="execution", target_id=1
            )
        _, stderr = editor.communicate(timeout=60)
        runs.flush()
        assert editor.returncode == 0, stderr
        assert "locked" not in stderr
        assert runs.log_count(1) == 20_000
        assert len(runs.list_audit(limit=10_000, target_type="execution")) == 40
        notes = [
            e for t in range(1, 21) for e in runs.ticket_history(t) if e.kind == "note"
        ]
        assert len(notes) == 300


def test_load_two_consoles_logs_audit_and_ticket_edits(db_path: Path) -> None:
    """Several runs stream log lines and audit rows while another console edits."""
    producers, lines_each = 8, 4000
    emitted = [0] * producers
    runs = Store.open(db_path)
    console = Store.open(db_path)
    ticket_ids = [console.create_ticket(title=f"t{i}", actor="bob") for i in range(20)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def produce(execution_id: int) -> None:
        try:
            for start in range(1, lines_each + 1, 100):
                runs.append_logs(
                    [
                        LogLine(execution_id, "s", "", "stdout", seq, AT, f"{seq} out")
                        for seq in range(start, start + 100)
                    ]
                )
                runs.audit(
                    actor="engine",
                    action="step.note",
                    target_type="execution",
                    target_id=execution_id,
                )
                emitted[execution_id] += 1
        except BaseException as exc:
            errors.append(exc)

    def edit() -> None:
        rng = random.Random(7)
        try:
            while not stop.is_set():
                console.update_ticket(
                    rng.choice(ticket_ids),
                    actor="bob",
                    priority=rng.choice(["P1", "P2", "P3"]),
                    note="load",
                )
        except BaseException as exc:
            errors.append(exc)

    editor = threading.Thread(target=edit)
    editor.start()
    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs.flush()
    stop.set()
    editor.join()

    assert errors == []
    for execution_id in range(producers):
        assert runs.log_count(execution_id) == lines_each
    notes = console.list_audit(limit=100_000, target_type="execution")
    assert len(notes) == sum(emitted) == producers * lines_each // 100
    edits = console.list_audit(limit=100_000, target_type="ticket")
    events = sum(len(console.ticket_history(t)) for t in ticket_ids)
    assert len(edits) > 20
    assert events >= len(edits)
    runs.close()
    console.close()
