"""C25 load: two consoles and a second process on one store, 8 runs at 200 lines/s.

Each of two processes runs 4 executions whose step prints 200 lines a second for
the whole duration while the process edits a ticket every 50 ms and watches the
other's edits. Reported: lines emitted against lines stored, errors (a "database
is locked" reaching anyone counts), and how long an edit took to reach the other
process. The baseline, measured in the same run, is one process alone with the
same 8 executions and no ticket edits, so the ratio is what sharing the store
costs the log ingest.

Run: .venv/bin/python bench/load.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from haloterm.config import Settings
from haloterm.services import Services
from tests.durability.helpers import integrity
from tests.durability.load import (
    LoadReport,
    run_load,
    runbook_text,
    start_load_child,
)
from tests.engine.conftest import make_settings

RATE = 200
LINES_CAP = 10**7
PAUSE = 1 / RATE


def _settings() -> Settings:
    # Every line is stored: no head-and-tail cap on a step's stored output.
    return make_settings(stored_tail_lines=LINES_CAP)


def _prepare(db: Path) -> tuple[int, int]:
    svc = Services.open(db, settings=_settings(), seed=False)
    path = db.parent / "chatty.yaml"
    path.write_text(runbook_text(), encoding="utf-8")
    svc.import_runbook(path)
    ids = [
        svc.store.create_ticket(title=t, type="task", priority="P3", actor="bench")
        for t in ("parent", "child")
    ]
    svc.store.close()
    return ids[0], ids[1]


def _stored(db: Path) -> tuple[int, int]:
    svc = Services.open(db, settings=_settings(), seed=False)
    try:
        runs = svc.store.list_executions(limit=100)
        lines = sum(
            sum(
                1
                for ln in svc.store.get_logs(e.id, limit=10**7)
                if ln.stream == "stdout"
            )
            for e in runs
        )
        return len(runs), lines
    finally:
        svc.store.close()


async def alone(db: Path, lines: int) -> float:
    """Baseline: one process, 8 executions, no edits."""
    _prepare(db)
    svc = Services.open(db, settings=_settings(), seed=False)
    await svc.start()
    started = time.perf_counter()
    try:
        params = {"lines": lines, "pause": PAUSE}
        ids = [await svc.engine.start("chatty", params, operator="b") for _ in range(8)]
        await asyncio.gather(*(svc.engine.wait(i) for i in ids))
    finally:
        await svc.stop()
    return time.perf_counter() - started


async def shared(db: Path, lines: int) -> tuple[float, LoadReport, dict[str, object]]:
    """Two consoles in this process plus a second process, under load."""
    mine, theirs = _prepare(db)
    out = db.parent / "child.json"
    a = Services.open(db, settings=_settings(), seed=False)
    b = Services.open(db, settings=_settings(), seed=False)
    await a.start()
    await b.start()
    try:
        child = await start_load_child(
            db,
            out,
            lines=lines,
            pause=PAUSE,
            mine=theirs,
            theirs=mine,
            tail_lines=lines + 1000,
        )
        started = time.perf_counter()
        report = await run_load(
            a, runs=4, lines=lines, pause=PAUSE, my_ticket=mine, their_ticket=theirs
        )
        await asyncio.to_thread(child.wait)
    finally:
        await b.stop()
        await a.stop()
    took = time.perf_counter() - started
    return took, report, json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    lines = int(args.seconds * RATE)
    with tempfile.TemporaryDirectory() as tmp:
        base_db = Path(tmp) / "alone" / "s.db"
        base_db.parent.mkdir()
        base = asyncio.run(alone(base_db, lines))
        db = Path(tmp) / "shared" / "s.db"
        db.parent.mkdir()
        took, mine, theirs = asyncio.run(shared(db, lines))
        runs, stored = _stored(db)
        check = integrity(db)
    emitted = 8 * lines
    lag = mine.seen_lag + list(theirs["seen_lag"])  # type: ignore[arg-type]
    errors = mine.errors + list(theirs["errors"])  # type: ignore[arg-type]
    print(f"{'':34}{'seconds':>9}{'lines/s':>10}")
    print(f"{'8 runs, one process (baseline)':34}{base:>9.1f}{emitted / base:>10.0f}")
    print(f"{'8 runs, 3 consoles, ticket edits':34}{took:>9.1f}{emitted / took:>10.0f}")
    print(f"ratio (shared / alone wall time): {took / base:.2f}x")
    print(f"lines emitted {emitted}, stored {stored} ({runs} runs)")
    print(
        f"ticket edits {mine.edits + int(theirs['edits'])}, "  # type: ignore[call-overload]
        f"seen by the other process: median {statistics.median(lag):.3f}s, "
        f"max {max(lag):.3f}s"
    )
    print(f"errors reaching anyone: {len(errors)} {errors[:3]}")
    print(f"integrity_check: {check}")


if __name__ == "__main__":
    main()
