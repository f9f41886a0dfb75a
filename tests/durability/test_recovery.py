"""Recovery after an owner dies: leftover processes, idempotent steps, secrets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from haloterm.models import ExecutionStatus, StepStatus
from haloterm.procgroups import process_start_ticks
from haloterm.services import Services
from haloterm.storage.recovery import StepProcess, stop_process_groups
from tests.durability.helpers import ROOT, child_env, spawn_script, wait_for
from tests.engine.conftest import make_settings

HANG = """
name: hang
steps:
  - id: first
    action: shell
    with: {command: "echo first"}
  - id: hang
    action: shell
    idempotent: true
    with: {command: "test -e MARKER || (echo $$ > PIDFILE; sleep 300 & wait)"}
"""

OWNER = """
import asyncio
from pathlib import Path
from haloterm.services import Services
from tests.engine.conftest import make_settings

async def main():
    svc = Services.open(Path({db!r}), settings=make_settings(), seed=False)
    await svc.start()
    await svc.engine.start("hang", {{}}, operator="alice")
    await asyncio.sleep(600)

asyncio.run(main())
"""


def _import(db: Path, tmp_path: Path, marker: Path, pidfile: Path) -> None:
    path = tmp_path / "hang.yaml"
    text = HANG.replace("MARKER", str(marker)).replace("PIDFILE", str(pidfile))
    path.write_text(text, encoding="utf-8")
    svc = Services.open(db, settings=make_settings(), seed=False)
    svc.import_runbook(path)
    svc.store.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or ") Z" not in stat.read_text()


async def test_a_dead_owners_step_processes_are_stopped_and_the_run_resumes(
    tmp_path: Path,
) -> None:
    db, marker, pidfile = tmp_path / "s.db", tmp_path / "go", tmp_path / "pid"
    _import(db, tmp_path, marker, pidfile)
    owner = spawn_script(db, OWNER.format(db=str(db)))
    try:
        await asyncio.to_thread(wait_for, pidfile.exists)
        await asyncio.to_thread(wait_for, lambda: pidfile.read_text().strip() != "")
        shell_pid = int(pidfile.read_text())
        assert _alive(shell_pid)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()

    assert _alive(shell_pid), "a SIGKILLed owner does not take its children along"
    svc = Services.open(db, settings=make_settings(), seed=False)
    await svc.start()
    try:
        (execution,) = svc.store.list_executions()
        assert execution.status is ExecutionStatus.INTERRUPTED
        assert execution.current_step == "hang"
        runs = {r.step_id: r for r in svc.store.step_runs(execution.id)}
        assert runs["first"].status is StepStatus.PASSED
        assert runs["hang"].reason == "interrupted"
        await asyncio.to_thread(wait_for, lambda: not _alive(shell_pid), 5)
        assert svc.store.step_processes(execution.id) == []
        assert [e.id for e in svc.store.interrupted_executions()] == [execution.id]

        # The step is idempotent: the lease holder's sweep resumes it once.
        marker.touch()
        assert await svc.engine.resume_idempotent_interrupted() == [execution.id]
        status = await asyncio.wait_for(svc.engine.wait(execution.id), 20)
        assert status is ExecutionStatus.SUCCEEDED
        assert await svc.engine.resume_idempotent_interrupted() == []
    finally:
        await svc.stop()


def test_a_reused_pid_is_never_signalled() -> None:
    """A recorded group whose leader now has another start time is left alone."""
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        ticks = process_start_ticks(sleeper.pid)
        assert ticks is not None
        reused = StepProcess(
            1, "s", os.uname().nodename, sleeper.pid, sleeper.pid, ticks - 1
        )
        assert stop_process_groups([reused], wait=True) == []
        assert sleeper.poll() is None
        same = StepProcess(1, "s", os.uname().nodename, sleeper.pid, sleeper.pid, ticks)
        assert stop_process_groups([same], wait=True) == [sleeper.pid]
        assert sleeper.wait(5) == -signal.SIGTERM
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_resume_without_a_terminal_names_the_missing_secrets(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    svc = Services.open(db, settings=make_settings(), seed=False)
    path = tmp_path / "sec.yaml"
    path.write_text(
        "name: sec\nparams:\n  token: {type: secret, required: true}\nsteps:\n"
        "  - {id: a, action: shell, with: {command: 'exit 1'}}\n",
        encoding="utf-8",
    )
    svc.import_runbook(path)
    svc.store.close()
    env = {**child_env(db), "HALOTERM_SECRET_TOKEN": "s3cr3t-value"}
    ran = subprocess.run(
        [sys.executable, "-m", "haloterm", "run", "sec"],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert ran.returncode == 1
    resumed = subprocess.run(
        [sys.executable, "-m", "haloterm", "resume", "1"],
        env=child_env(db),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert resumed.returncode == 2
    assert "needs its secret params again: token" in resumed.stderr
    assert "s3cr3t-value" not in resumed.stderr + resumed.stdout


def _group(script: str) -> tuple[subprocess.Popen[bytes], StepProcess]:
    """A shell leading its own group, as a recorded step process, once it runs."""
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    wait_for(lambda: process_start_ticks(proc.pid) is not None)
    recorded = StepProcess(
        1, "s", os.uname().nodename, proc.pid, proc.pid, process_start_ticks(proc.pid)
    )
    return proc, recorded


def test_a_left_behind_group_gets_sigterm_to_clean_up_then_sigkill(
    tmp_path: Path,
) -> None:
    """SIGTERM first, so a trap can remove its lock; SIGKILL only for a group that
    still runs after the grace."""
    lock, ready = tmp_path / "lock", tmp_path / "ready"
    polite, polite_rec = _group(
        f"touch {lock}; trap 'rm -f {lock}; exit 0' TERM; "
        f"touch {ready}; while :; do sleep 0.05; done"
    )
    stubborn_ready = tmp_path / "stubborn"
    stubborn, stubborn_rec = _group(
        f"trap '' TERM; touch {stubborn_ready}; while :; do sleep 0.05; done"
    )
    try:
        wait_for(lambda: ready.exists() and stubborn_ready.exists())
        started = time.monotonic()
        signalled = stop_process_groups([polite_rec, stubborn_rec], grace=1.0)
        assert signalled == [polite.pid, stubborn.pid]
        assert polite.wait(5) == 0, "the trap ran and exited cleanly"
        assert not lock.exists()
        assert stubborn.wait(10) == -signal.SIGKILL
        assert time.monotonic() - started >= 1.0
    finally:
        for proc in (polite, stubborn):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
