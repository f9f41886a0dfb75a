"""The console's terminal goes away (SIGHUP): its runs go on to completion."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
from pathlib import Path

from haloterm.models import ExecutionStatus
from haloterm.services import Services
from tests.durability.helpers import scalar, spawn_script, wait_for
from tests.engine.conftest import make_settings

SLOW = """
name: slow
steps:
  - id: count
    action: shell
    with: {command: "for i in $(seq 1 60); do echo line-$i; sleep 0.05; done"}
"""

CONSOLE = """
import asyncio
from pathlib import Path
from haloterm.app import create_app
from haloterm.services import Services
from tests.engine.conftest import make_settings

async def main():
    svc = Services.open(Path({db!r}), settings=make_settings(), seed=False)
    app = create_app(svc)
    console = asyncio.create_task(app.run_async(size=(100, 30)))
    while not svc._tasks:
        await asyncio.sleep(0.05)
    execution_id = await svc.engine.start("slow", {{}}, operator="alice")
    Path({started!r}).write_text(str(execution_id))
    await console

asyncio.run(main())
"""


async def test_a_hung_up_console_finishes_its_runs_then_exits(tmp_path: Path) -> None:
    db, started = tmp_path / "s.db", tmp_path / "started"
    svc = Services.open(db, settings=make_settings(), seed=False)
    path = tmp_path / "slow.yaml"
    path.write_text(SLOW, encoding="utf-8")
    svc.import_runbook(path)
    svc.store.close()

    master, slave = pty.openpty()
    console = spawn_script(
        db,
        CONSOLE.format(db=str(db), started=str(started)),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    drained = asyncio.create_task(asyncio.to_thread(_drain, master))
    try:
        await asyncio.to_thread(wait_for, started.exists, 30)
        execution_id = int(started.read_text())
        running = scalar(db, "SELECT status FROM executions WHERE id = ?", execution_id)
        assert running in ("queued", "running"), "the run ended before the hangup"
        console.send_signal(signal.SIGHUP)
        os.close(master)
        code = await asyncio.to_thread(console.wait, 30)
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()
        await drained

    assert code == 0
    svc = Services.open(db, settings=make_settings(), seed=False)
    try:
        execution = svc.store.get_execution(execution_id)
        assert execution is not None
        assert execution.status is ExecutionStatus.SUCCEEDED
        stdout = [
            ln.text for ln in svc.store.get_logs(execution_id) if ln.stream == "stdout"
        ]
        assert stdout == [f"line-{i}" for i in range(1, 61)]
    finally:
        svc.store.close()


def _drain(fd: int) -> None:
    """Read the console's screen until the terminal is closed."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        return
