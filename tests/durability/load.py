"""Several consoles on one store under load: shared by the test and ``bench/``.

Each process runs executions whose step prints lines at a steady rate while the
processes edit tickets; each process notes how long the others' ticket edits took
to reach it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from haloterm.models import ExecutionStatus
from haloterm.services import Services

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

PRINTER = (
    "import sys, time; [(print('line', i, flush=True),"
    " time.sleep(float(sys.argv[2]))) for i in range(int(sys.argv[1]))]"
)

RUNBOOK = """
name: chatty
params:
  lines: {type: integer, default: 400}
  pause: {type: number, default: 0.005}
steps:
  - id: talk
    action: shell
    with: {command: COMMAND}
"""


def runbook_text() -> str:
    """The load runbook, with this interpreter as the line printer."""
    command = f'{sys.executable} -c "{PRINTER}" {{{{ params.lines }}}}'
    command += " {{ params.pause }}"
    return RUNBOOK.replace("COMMAND", json.dumps(command))


@dataclass
class LoadReport:
    """What one process saw."""

    executions: list[int] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    edits: int = 0
    seen_lag: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def run_load(
    svc: Services,
    *,
    runs: int,
    lines: int,
    pause: float,
    my_ticket: int,
    their_ticket: int | None,
) -> LoadReport:
    """Run ``runs`` executions and edit ``my_ticket`` until they end.

    Each edit puts the wall-clock time in the ticket's ``stamp`` field; the
    other process's ticket is polled and the lag of each new stamp recorded.
    """
    report = LoadReport()
    params = {"lines": lines, "pause": pause}
    for _ in range(runs):
        report.executions.append(
            await svc.engine.start("chatty", params, operator=svc.operator)
        )
    waits = asyncio.gather(*(svc.engine.wait(i) for i in report.executions))
    last_seen: object = None
    while not waits.done():
        try:
            await svc.store.call(
                svc.store.update_ticket,
                my_ticket,
                actor=svc.operator,
                fields={"stamp": time.time()},
            )
            report.edits += 1
            if their_ticket is not None:
                ticket = await svc.store.call(svc.store.get_ticket, their_ticket)
                stamp = ticket.fields.get("stamp") if ticket else None
                if stamp is not None and stamp != last_seen:
                    # The first value seen may be old; count only changes after it.
                    if last_seen is not None:
                        report.seen_lag.append(time.time() - float(stamp))
                    last_seen = stamp
        except Exception as exc:
            report.errors.append(f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(0.05)
    statuses = await waits
    report.statuses = [ExecutionStatus(s).value for s in statuses]
    return report


_CHILD = """
import asyncio, dataclasses, json
from pathlib import Path
from haloterm.services import Services
from tests.durability.load import run_load
from tests.engine.conftest import make_settings

async def main():
    settings = make_settings(stored_tail_lines={tail_lines})
    svc = Services.open(Path({db!r}), settings=settings, seed=False)
    await svc.start()
    Path({out!r} + ".ready").touch()
    try:
        report = await run_load(
            svc, runs=4, lines={lines}, pause={pause}, my_ticket={mine},
            their_ticket={theirs},
        )
    finally:
        await svc.stop()
    Path({out!r}).write_text(json.dumps(dataclasses.asdict(report)))

asyncio.run(main())
"""


async def start_load_child(
    db: Path,
    out: Path,
    *,
    lines: int,
    pause: float,
    mine: int,
    theirs: int,
    tail_lines: int = 5000,
) -> subprocess.Popen[bytes]:
    """Start a second process running :func:`run_load` on ``db``; return once it is
    ready. Its report is written to ``out`` as JSON when it ends."""
    from pathlib import Path

    from tests.durability.helpers import spawn_script, wait_for

    child = spawn_script(
        db,
        _CHILD.format(
            db=str(db),
            out=str(out),
            lines=lines,
            pause=pause,
            mine=mine,
            theirs=theirs,
            tail_lines=tail_lines,
        ),
    )
    ready = Path(str(out) + ".ready")
    await asyncio.to_thread(wait_for, ready.exists, 60)
    return child
