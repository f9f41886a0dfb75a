"""kill -9 of the processes running executions, at random points (issue "Durability").

Afterwards no execution is left ``running``, each interrupted one stopped at the
right step and resumes to success, no committed log line is lost, and the file
passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from haloterm.models import ExecutionStatus
from haloterm.services import Services
from tests.durability.killing import (
    RUNBOOK,
    check,
    kill_inside_runs,
    snapshot_lines,
    spawn,
)
from tests.engine.conftest import make_settings

CHILDREN = 5


def _recover(db: Path) -> Services:
    # Opening the store is what sweeps dead owners: no heartbeat wait on one host.
    return Services.open(db, settings=make_settings(), seed=False)


async def test_kill_nine_at_ten_random_points(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    rng = random.Random(20261203)
    setup = _recover(db)
    path = tmp_path / "kill-me.yaml"
    path.write_text(RUNBOOK, encoding="utf-8")
    setup.import_runbook(path)
    setup.store.close()

    # Round one: runs killed somewhere between start-up and their last step.
    procs = [spawn(db, "run", "kill-me") for _ in range(CHILDREN)]
    await asyncio.to_thread(kill_inside_runs, db, procs, rng, 1.2)
    svc = _recover(db)
    try:
        first = check(svc.store, db, {})
        assert first.ok, first
        ids = first.interrupted
        assert ids, "no kill landed inside a run: the test proves nothing"
        before = snapshot_lines(svc.store)
    finally:
        svc.store.close()

    # Round two: resumes killed again, at other points.
    procs = [spawn(db, "resume", str(i)) for i in ids]
    await asyncio.to_thread(kill_inside_runs, db, procs, rng, 0.4)
    svc = _recover(db)
    await svc.start()
    try:
        second = check(svc.store, db, before)
        assert second.ok, second
        assert second.interrupted, "no resume was interrupted"
        for execution_id in second.interrupted:
            await svc.engine.resume(execution_id, actor="alice")
        for execution_id in second.interrupted:
            status = await asyncio.wait_for(svc.engine.wait(execution_id), 30)
            assert status is ExecutionStatus.SUCCEEDED, execution_id
        final = check(svc.store, db, before)
        assert final.ok, final
    finally:
        await svc.stop()
