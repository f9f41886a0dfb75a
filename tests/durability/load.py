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

from haloterm.models import ExecutionStatus
from haloterm.services import Services

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
