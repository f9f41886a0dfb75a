"""A no-op step end to end, persisted, against the bare cost of persisting it.

Runs a runbook of N no-op steps through the real engine and store (every state change
committed before it is published) and, in the same run, the floor any persisted engine
pays: the same number of SQLite transactions on the same kind of file, with no engine.

    python bench/engine_step.py [--steps 500]

Targets: median <= 1 ms per step, >= 500 steps/s.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from haloterm.config import Settings
from haloterm.engine.events import Event, StepChanged
from haloterm.plugins.base import Action, ActionContext, ActionInputs, StepResult
from haloterm.plugins.registry import ActionRegistry
from haloterm.services import Services


class NoopInputs(ActionInputs):
    pass


class NoopAction(Action):
    name = "noop"
    Inputs = NoopInputs

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        return StepResult(passed=True)


async def engine_run(folder: Path, steps: int) -> tuple[list[float], float]:
    registry = ActionRegistry.from_classes([NoopAction])
    svc = Services.open(
        folder / "engine.db", settings=Settings(), seed=False, registry=registry
    )
    await svc.start()
    body = "\n".join(f"  - {{id: s{i}, action: noop}}" for i in range(steps))
    path = folder / "noop.yaml"
    path.write_text(f"name: noop\nsteps:\n{body}\n", encoding="utf-8")
    svc.import_runbook(path)

    started: dict[str, float] = {}
    per_step: list[float] = []

    def clock(event: Event) -> None:
        if isinstance(event, StepChanged):
            if event.status == "running":
                started[event.step_id] = time.perf_counter()
            elif event.status == "passed":
                per_step.append(time.perf_counter() - started[event.step_id])

    svc.engine.bus.subscribe(clock)
    t0 = time.perf_counter()
    execution_id = await svc.engine.start("noop", {}, operator="bench")
    await svc.engine.wait(execution_id)
    total = time.perf_counter() - t0
    await svc.stop()
    return per_step, total


def bare_run(folder: Path, steps: int) -> tuple[list[float], float]:
    con = sqlite3.connect(folder / "bare.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE step_runs (id INTEGER PRIMARY KEY, step TEXT, status TEXT)"
    )
    per_step: list[float] = []
    t0 = time.perf_counter()
    for i in range(steps):
        s = time.perf_counter()
        for status in ("running", "passed"):
            con.execute("BEGIN IMMEDIATE")
            con.execute(
                "INSERT OR REPLACE INTO step_runs (id, step, status) VALUES (?, ?, ?)",
                (i, f"s{i}", status),
            )
            con.execute("COMMIT")
        per_step.append(time.perf_counter() - s)
    return per_step, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        engine_steps, engine_total = asyncio.run(engine_run(folder, args.steps))
        bare_steps, bare_total = bare_run(folder, args.steps)

    e_med = statistics.median(engine_steps) * 1000
    b_med = statistics.median(bare_steps) * 1000
    print(
        f"no-op step end to end, {args.steps} steps "
        "(target: median <= 1 ms, >= 500 steps/s)"
    )
    print(f"{'':26}{'median ms':>12}{'p95 ms':>10}{'steps/s':>10}")
    for label, per, total in (
        ("haloterm engine + store", engine_steps, engine_total),
        ("bare sqlite (2 commits)", bare_steps, bare_total),
    ):
        p95 = sorted(per)[int(len(per) * 0.95)] * 1000
        print(
            f"{label:26}{statistics.median(per) * 1000:>12.3f}"
            f"{p95:>10.3f}{len(per) / total:>10.0f}"
        )
    print(f"ratio (median): {e_med / b_med:.1f}x the bare persistence floor")


if __name__ == "__main__":
    main()
