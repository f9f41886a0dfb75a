"""kill -9 at many random points across runs, then check what the store kept.

Rounds of concurrent ``haloterm run`` / ``haloterm resume`` children on one store are
SIGKILLed at random instants; after each round the store is opened (which sweeps
dead owners) and checked: no execution left running, each interrupted one stopped
at the right step, no committed log line lost, ``PRAGMA integrity_check`` ok. At
the end every interrupted run is resumed to success. The baseline figure, measured
in the same run, is the same runs without kills, so the ratio is what recovery
and resumes cost in wall time.

Run: .venv/bin/python bench/kill_points.py [--points 100] [--parallel 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from haloterm.models import ExecutionStatus
from haloterm.services import Services
from tests.durability.killing import (
    LINES,
    RUNBOOK,
    STEPS,
    check,
    kill_inside_runs,
    snapshot_lines,
    spawn,
)
from tests.engine.conftest import make_settings
from tests.identity import HARNESS_TOML


def _open(db: Path) -> Services:
    return Services.open(db, settings=make_settings(), seed=False)


def _prepare(db: Path) -> None:
    svc = _open(db)
    path = db.parent / "kill-me.yaml"
    path.write_text(RUNBOOK, encoding="utf-8")
    svc.import_runbook(path)
    svc.store.close()


def baseline(db: Path, runs: int, parallel: int) -> float:
    """Wall time of ``runs`` runs to completion, ``parallel`` at a time, no kills."""
    started = time.perf_counter()
    for first in range(0, runs, parallel):
        procs = [
            spawn(db, "run", "kill-me") for _ in range(min(parallel, runs - first))
        ]
        for proc in procs:
            proc.wait()
    return time.perf_counter() - started


def killed(
    db: Path, points: int, parallel: int, seed: int, upto: float
) -> tuple[float, dict[str, int]]:
    """Kill ``points`` children at random; resume what was interrupted; check."""
    rng = random.Random(seed)
    started = time.perf_counter()
    totals = {"kills": 0, "interrupted": 0, "problems": 0}
    before: dict[int, set[tuple[int, str]]] = {}
    pending: list[int] = []
    while totals["kills"] < points:
        batch = min(parallel, points - totals["kills"])
        resumes = pending[:batch]
        pending = pending[batch:]
        procs = [spawn(db, "resume", str(i)) for i in resumes]
        procs += [spawn(db, "run", "kill-me") for _ in range(batch - len(resumes))]
        kill_inside_runs(db, procs, rng, upto)
        totals["kills"] += batch
        svc = _open(db)
        findings = check(svc.store, db, before)
        before = snapshot_lines(svc.store)
        svc.store.close()
        if not findings.ok:
            totals["problems"] += 1
            print("problem:", findings)
        totals["interrupted"] += len(findings.interrupted)
        pending = sorted(set(pending) | set(findings.interrupted))
    totals["resumed_ok"] = asyncio.run(_finish(db, before))
    return time.perf_counter() - started, totals


async def _finish(db: Path, before: dict[int, set[tuple[int, str]]]) -> int:
    svc = _open(db)
    await svc.start()
    ok = 0
    try:
        for execution in svc.store.list_executions(status="interrupted", limit=10_000):
            await svc.engine.resume(execution.id, actor="bench")
            if await svc.engine.wait(execution.id) is ExecutionStatus.SUCCEEDED:
                ok += 1
        findings = check(svc.store, db, before)
        if not findings.ok:
            print("problem after resuming:", findings)
    finally:
        await svc.stop()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # The children act as alice, as the tests' do: the config lets this
        # account do so (haloterm refuses HALOTERM_OPERATOR otherwise).
        config = Path(tmp) / "haloterm.toml"
        config.write_text(HARNESS_TOML, encoding="utf-8")
        os.environ["HALOTERM_CONFIG"] = str(config)
        base_db = Path(tmp) / "base" / "s.db"
        base_db.parent.mkdir()
        _prepare(base_db)
        base = baseline(base_db, args.parallel * 2, args.parallel)
        db = Path(tmp) / "kill" / "s.db"
        db.parent.mkdir()
        _prepare(db)
        # Each child is killed at a random instant after its run started running
        # (start-up alone proves nothing), within the time its steps take.
        steps_take = STEPS * LINES * 0.02
        took, totals = killed(db, args.points, args.parallel, args.seed, steps_take)
    per_base = base / (args.parallel * 2)
    per_kill = took / args.points
    print(f"{'':28}{'seconds':>10}{'per run':>10}")
    print(f"{'runs, no kills (baseline)':28}{base:>10.1f}{per_base:>10.2f}")
    print(f"{'kill points + recovery':28}{took:>10.1f}{per_kill:>10.2f}")
    print(f"ratio per run: {per_kill / per_base:.2f}x")
    print(
        f"kills {totals['kills']}, interrupted {totals['interrupted']}, "
        f"left interrupted then resumed to success {totals['resumed_ok']}, "
        f"rounds with problems {totals['problems']}"
    )


if __name__ == "__main__":
    main()
