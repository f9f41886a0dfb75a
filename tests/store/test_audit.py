"""The audit trail is append-only in SQLite itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from haloterm.storage import Store


def test_audit_rows_cannot_be_changed_or_deleted(store: Store, db_path: Path) -> None:
    audit_id = store.audit(
        actor="alice",
        action="ticket.update",
        target_type="ticket",
        target_id=1,
        detail={"note": "[bold]x[/bold]"},
    )
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit SET actor = 'mallory' WHERE id = ?", (audit_id,))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit")
    finally:
        conn.close()
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.write(lambda c: c.execute("DELETE FROM audit"))
    [record] = store.list_audit()
    assert (record.actor, record.detail) == ("alice", {"note": "[bold]x[/bold]"})
    assert record.origin == store.origin


def test_list_audit_pages_and_filters(store: Store) -> None:
    ids = [
        store.audit(
            actor="a",
            action="x",
            target_type="t" if i % 2 else "u",
            target_id=i,
            origin="cli",
        )
        for i in range(10)
    ]
    assert [r.id for r in store.list_audit(limit=3)] == ids[::-1][:3]
    assert [r.id for r in store.list_audit(before_id=ids[2])] == [ids[1], ids[0]]
    assert [r.id for r in store.list_audit(target_type="t")] == ids[1::2][::-1]
    assert [r.id for r in store.list_audit(target_type="u", target_id=4)] == [ids[4]]
    assert {r.origin for r in store.list_audit()} == {"cli"}
