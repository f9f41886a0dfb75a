"""C25: two consoles and a second process under load on one store.

8 executions print 200 lines/s each (shortened to 2 s here; 60 s in
``bench/load.py``) while tickets are edited. No "database is locked" reaches
anyone, every emitted line is stored, and each process sees the others' ticket
edits within a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from haloterm.services import Services
from tests.durability.helpers import integrity
from tests.durability.load import run_load, runbook_text, start_load_child
from tests.engine.conftest import make_settings

LINES, PAUSE = 400, 0.005


async def test_two_consoles_and_a_second_process_under_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, out = tmp_path / "s.db", tmp_path / "child.json"
    a = Services.open(db, settings=make_settings(), seed=False)
    b = Services.open(db, settings=make_settings(), seed=False)
    await a.start()
    await b.start()
    try:
        path = tmp_path / "chatty.yaml"
        path.write_text(runbook_text(), encoding="utf-8")
        a.import_runbook(path)
        mine, theirs = (
            a.store.create_ticket(title=t, type="task", priority="P3", actor="alice")
            for t in ("parent", "child")
        )
        child = await start_load_child(
            db, out, lines=LINES, pause=PAUSE, mine=theirs, theirs=mine
        )
        report = await run_load(
            a, runs=4, lines=LINES, pause=PAUSE, my_ticket=mine, their_ticket=theirs
        )
        code = await asyncio.to_thread(child.wait, 60)
        # A second console (b) sees every execution of both processes live.
        assert len(b.store.list_executions(limit=100)) == 8
    finally:
        await b.stop()
        await a.stop()

    assert code == 0
    theirs_report = json.loads(out.read_text())
    assert report.errors == [] and theirs_report["errors"] == []
    assert report.statuses == ["succeeded"] * 4
    assert theirs_report["statuses"] == ["succeeded"] * 4
    assert report.edits > 10 and theirs_report["edits"] > 10
    assert report.seen_lag and max(report.seen_lag) < 1.0
    assert theirs_report["seen_lag"] and max(theirs_report["seen_lag"]) < 1.0

    store = Services.open(db, settings=make_settings(), seed=False).store
    try:
        for execution in store.list_executions(limit=100):
            assert store.log_count(execution.id, "talk") >= LINES
            stdout = [
                ln
                for ln in store.get_logs(execution.id, limit=10_000)
                if ln.stream == "stdout"
            ]
            assert len(stdout) == LINES, execution.id
    finally:
        store.close()
    assert integrity(db) == "ok"
    locked = [r for r in caplog.records if "locked" in r.getMessage().lower()]
    assert [r for r in locked if r.levelno >= logging.ERROR] == []
