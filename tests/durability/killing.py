"""kill -9 at random points of runs, then check what the store kept.

Shared by ``tests/durability/test_kill_points.py`` (a few points) and
``bench/kill_points.py`` (a hundred).
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from haloterm.models import ExecutionStatus, StepStatus
from haloterm.storage import Store
from tests.durability.helpers import ROOT, child_env, integrity

STEPS = 4
LINES = 12

RUNBOOK = "name: kill-me\nsteps:\n" + "".join(
    f"  - id: s{k}\n    action: shell\n"
    f"    with: {{command: 'for i in $(seq 1 {LINES}); do echo s{k}-$i;"
    " sleep 0.02; done'}\n"
    for k in range(1, STEPS + 1)
)


@dataclass
class Findings:
    """What a check of the store after kills found wrong (empty lists: nothing)."""

    running: list[int] = field(default_factory=list)
    wrong_step: list[str] = field(default_factory=list)
    lost_lines: list[str] = field(default_factory=list)
    integrity: str = "ok"
    interrupted: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.running or self.wrong_step or self.lost_lines) and (
            self.integrity == "ok"
        )


def spawn(db: Path, *args: str) -> subprocess.Popen[bytes]:
    """``haloterm ARGS`` in a child process on ``db``, output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "haloterm", *args],
        env=child_env(db),
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_at_random(
    procs: list[subprocess.Popen[bytes]], rng: random.Random, low: float, high: float
) -> None:
    """SIGKILL each child at its own random instant after now."""
    started = time.monotonic()
    plan = sorted((rng.uniform(low, high), i) for i in range(len(procs)))
    for at, index in plan:
        delay = started + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        proc = procs[index]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    for proc in procs:
        proc.wait(30)


def snapshot_lines(store: Store) -> dict[int, set[tuple[int, str]]]:
    """Every committed (seq, text) log line, per execution."""
    found: dict[int, set[tuple[int, str]]] = {}
    for execution in store.list_executions(limit=10_000):
        lines = store.get_logs(execution.id, limit=1_000_000)
        found[execution.id] = {(ln.seq, ln.text) for ln in lines}
    return found


def check(store: Store, db: Path, before: dict[int, set[tuple[int, str]]]) -> Findings:
    """Check the store after its owners were killed and recovery ran."""
    findings = Findings(integrity=integrity(db))
    after = snapshot_lines(store)
    for execution_id, lines in before.items():
        missing = lines - after.get(execution_id, set())
        if missing:
            findings.lost_lines.append(f"#{execution_id}: {len(missing)} lines gone")
    for execution in store.list_executions(limit=10_000):
        if execution.status in (ExecutionStatus.RUNNING, ExecutionStatus.QUEUED):
            findings.running.append(execution.id)
        if execution.status is ExecutionStatus.INTERRUPTED:
            findings.interrupted.append(execution.id)
            problem = _step_problem(store, execution.id, execution.current_step)
            if problem:
                findings.wrong_step.append(f"#{execution.id}: {problem}")
    return findings


def _step_problem(store: Store, execution_id: int, current: str | None) -> str | None:
    runs = {r.step_id: r for r in store.step_runs(execution_id) if r.host == ""}
    order = [f"s{k}" for k in range(1, STEPS + 1)]
    if current is None:
        return (
            "no current step"
            if any(r.status is not StepStatus.PENDING for r in runs.values())
            else None
        )
    index = order.index(current)
    for step_id in order[:index]:
        if runs[step_id].status is not StepStatus.PASSED:
            return f"{step_id} before {current} is {runs[step_id].status.value}"
        texts = [
            ln.text
            for ln in store.get_logs(execution_id, step_id=step_id, limit=10_000)
            if ln.stream == "stdout"
        ]
        want = [f"{step_id}-{i}" for i in range(1, LINES + 1)]
        if texts[-LINES:] != want:
            return f"{step_id} passed with {len(texts)} stdout lines"
    here = runs[current]
    if here.status not in (StepStatus.PENDING, StepStatus.FAILED):
        return f"{current} is {here.status.value}"
    if here.status is StepStatus.FAILED and here.reason != "interrupted":
        return f"{current} failed: {here.reason}"
    for step_id in order[index + 1 :]:
        if runs[step_id].status is not StepStatus.PENDING:
            return f"{step_id} after {current} is {runs[step_id].status.value}"
    return None


def kill_inside_runs(
    db: Path,
    procs: list[subprocess.Popen[bytes]],
    rng: random.Random,
    upto: float,
    timeout: float = 60.0,
) -> None:
    """SIGKILL each child a random instant after its run started running.

    The child's run is found by the owner id it stamps on it (host:pid:...), so
    a kill lands inside the run whatever the machine's load, not before start-up
    ended.
    """
    kill_at: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            running = _running_pids(conn)
            now = time.monotonic()
            for proc in procs:
                if proc.poll() is not None:
                    continue
                if proc.pid not in kill_at and proc.pid in running:
                    kill_at[proc.pid] = now + rng.uniform(0, upto)
                if now >= kill_at.get(proc.pid, float("inf")):
                    proc.send_signal(signal.SIGKILL)
            time.sleep(0.02)
    finally:
        conn.close()
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def _running_pids(conn: sqlite3.Connection) -> set[int]:
    rows = conn.execute(
        "SELECT owner_id FROM executions WHERE status = 'running'"
    ).fetchall()
    pids = set()
    for (owner,) in rows:
        parts = str(owner or "").split(":")
        if len(parts) >= 3 and parts[-2].isdigit():
            pids.add(int(parts[-2]))
    return pids
