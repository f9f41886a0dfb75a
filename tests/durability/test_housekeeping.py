"""Backup, purge and checkpoint on a live store; a full disk."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from haloterm.engine.events import LogLine
from haloterm.models import ExecutionStatus
from haloterm.storage import Store, StoreError
from haloterm.storage.housekeeping import backup, checkpoint, purge
from tests.durability.helpers import integrity, scalar


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _finished_run(store: Store, lines: int, spool: Path | None = None) -> int:
    execution = store.create_execution(
        runbook="r",
        version=1,
        params={},
        secret_params=[],
        trigger="manual",
        operator="alice",
        step_ids=["a"],
    )
    at = store.now()
    store.append_logs(
        [
            LogLine(execution.id, "a", "", "stdout", i, at, f"line {i}")
            for i in range(1, lines + 1)
        ]
    )
    if spool is not None:
        spool.write_text("output", encoding="utf-8")
        store.write(
            lambda conn: conn.execute(
                "UPDATE step_runs SET output_file = ? WHERE execution_id = ?",
                (str(spool), execution.id),
            )
        )
    store.update_execution(
        execution.id, status=ExecutionStatus.SUCCEEDED.value, finished_at=at
    )
    return execution.id


def test_a_backup_taken_while_writing_is_consistent(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    stop = threading.Event()

    def keep_writing() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            store.audit(actor="w", action="t", target_type="x", target_id=n)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        _finished_run(store, 500)
        report = backup(store, tmp_path / "copy.db")
    finally:
        stop.set()
        writer.join()
    assert report.integrity == "ok"
    assert integrity(tmp_path / "copy.db") == "ok"
    assert scalar(tmp_path / "copy.db", "SELECT count(*) FROM log_lines") == 500
    copied = scalar(tmp_path / "copy.db", "SELECT count(*) FROM audit")
    assert isinstance(copied, int) and copied > 0
    with pytest.raises(StoreError, match="already exists"):
        backup(store, tmp_path / "copy.db")
    assert (tmp_path / "copy.db").stat().st_mode & 0o077 == 0
    copy = Store.open(tmp_path / "copy.db")  # the copy opens as a store
    copy.close()
    store.close()


def test_purge_keeps_recent_logs_and_the_audit_unless_asked(tmp_path: Path) -> None:
    clock = Clock()
    store = Store.open(tmp_path / "s.db", clock=clock)
    spools = tmp_path / "output"
    spools.mkdir()
    old = _finished_run(store, 10, spools / "old.log")
    clock.now += timedelta(days=100)
    new = _finished_run(store, 10)

    report = purge(store, older_than=90 * 86400, actor="alice", spool_dir=spools)
    assert (report.executions, report.log_lines, report.spool_files) == (1, 10, 1)
    assert store.log_count(old) == 0 and store.log_count(new) == 10
    assert not (spools / "old.log").exists()
    assert store.get_execution(old) is not None  # history stays
    actions = [r.action for r in store.list_audit()]
    assert "store.purge" in actions and "execution.create" in actions

    # The append-only trigger still holds outside a recorded purge.
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.write(lambda conn: conn.execute("DELETE FROM audit"))

    before = len(store.list_audit())
    report = purge(store, older_than=90 * 86400, actor="alice", include_audit=True)
    assert report.audit_records > 0
    records = store.list_audit()
    assert len(records) == before - report.audit_records + 1
    last = records[0]
    assert last.action == "store.purge" and last.detail["include_audit"] is True
    assert scalar(tmp_path / "s.db", "SELECT count(*) FROM audit_purges") == 1
    assert scalar(tmp_path / "s.db", "SELECT sum(open) FROM audit_purges") == 0
    store.close()


def test_a_passive_checkpoint_empties_the_wal(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    _finished_run(store, 2000)
    report = checkpoint(store)
    assert not report.busy
    assert report.checkpointed == report.wal_pages > 0
    store.close()


def test_a_full_disk_is_a_clear_error_and_corrupts_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    pages = store.write(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    store.write(
        lambda conn: conn.execute(f"PRAGMA max_page_count = {int(pages) + 20:d}")
    )
    big = "x" * 4000
    with pytest.raises(StoreError, match="full") as caught:
        for n in range(1000):
            store.audit(
                actor="a",
                action="fill",
                target_type="x",
                target_id=n,
                detail={"pad": big},
            )
    assert str(tmp_path / "s.db") in str(caught.value)
    assert integrity(tmp_path / "s.db") == "ok"

    # Room again: writes go on, nothing half-written stayed.
    store.write(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    store.audit(actor="a", action="after", target_type="x", target_id=0)
    assert store.list_audit(limit=1)[0].action == "after"
    store.close()
    assert integrity(tmp_path / "s.db") == "ok"
