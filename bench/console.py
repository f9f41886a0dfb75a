"""First paint and key-to-screen latency of the console, as the issue (C30) states it.

Three runs of the app headless (``run_test``, 120x40), each on a store built here:

- ``empty``: a fresh store with just 150 tickets (so that there is a next page to
  read), no runs, nothing running: the baseline;
- ``big``: 250,000 tickets (mixed priority and status, 10 % with 200-character
  titles), 2,000 runs linked to them and 1,000,000 log lines;
- ``big+stream``: the same store while a shell step streams 50,000 lines a second
  through the engine (logs batched to the bus and the store) during every key.

Each figure is the time from the key to the screen having its result (the ticket
table's ``PageShown`` handled, or the ``Focus`` event handled by the widget that
takes it; the repaint follows on the next frame), the median of a few presses,
printed with its ratio to the empty store. RSS is read around each run: it should
follow the page on screen, not the store.

Usage: ``.venv/bin/python bench/console.py [tickets] [log lines] [lines per second]``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual import events
from textual.message import Message

from haloterm.app import create_app
from haloterm.config import Settings
from haloterm.engine.events import LogBatch
from haloterm.services import Services
from haloterm.widgets.ticket_table import TicketTable

NOW = datetime(2025, 6, 3, 15, 0, tzinfo=UTC)
REPEAT = 5
TICKET_SQL = (
    "INSERT INTO tickets (title, priority, status, type, description, fields, source,"
    " created_at, updated_at) VALUES (?, ?, ?, 'incident', '', '{}', 'manual', ?, ?)"
)
RUN_SQL = (
    "INSERT INTO executions (runbook, version, status, trigger, ticket_id, operator,"
    " created_at) VALUES ('bench-stream', 1, ?, 'manual', ?, 'bench', ?)"
)
LOG_SQL = (
    "INSERT INTO log_lines (execution_id, seq, step_id, host, stream, at, text)"
    " VALUES (?, ?, 'stream', '', 'stdout', ?, ?)"
)
STREAMER = """\
import sys, time
rate, line = int(sys.argv[1]), "x" * 60 + " line {}\\n"
batch, n, start = max(1, rate // 100), 0, time.monotonic()
while True:
    sys.stdout.write("".join(line.format(n + i) for i in range(batch)))
    sys.stdout.flush()
    n += batch
    ahead = n / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
"""
RUNBOOK = """\
name: bench-stream
title: Stream log lines for the console bench
steps:
  - id: stream
    action: shell
    timeout: 10m
    with: {{command: "{python} {script} {rate}"}}
"""


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fill(services: Services, tickets: int, log_lines: int) -> None:
    """Insert the tickets, runs on the first tickets, and their log lines."""
    runs = min(2_000, tickets) if log_lines else 0

    def insert(conn: Any) -> None:
        batch = []
        for i in range(tickets):
            long = i % 10 == 0
            title = ("Long title " * 19)[:200] if long else f"Ticket {i}"
            day = f"2025-0{1 + i % 5}-{1 + i % 28:02d}"
            at = f"{day}T{i % 24:02d}:00:{i % 60:02d}.{i % 1_000_000:06d}+00:00"
            priority = ["P1", "P2", "P3", "P4"][i % 4]
            batch.append((title, priority, ["open", "resolved"][i % 2], at, at))
            if len(batch) == 50_000:
                conn.executemany(TICKET_SQL, batch)
                batch.clear()
        conn.executemany(TICKET_SQL, batch)
        at = NOW.isoformat()
        statuses = ["succeeded", "failed", "cancelled", "interrupted"]
        conn.executemany(
            RUN_SQL, [(statuses[i % 4], tickets - i, at) for i in range(runs)]
        )

    services.store.write(insert)
    per_run = max(1, log_lines // max(runs, 1))
    text = "y" * 60
    for first in range(0, runs, 100):

        def logs(conn: Any, first: int = first) -> None:
            conn.executemany(
                LOG_SQL,
                (
                    (run + 1, seq, NOW.isoformat(), text)
                    for run in range(first, min(first + 100, runs))
                    for seq in range(per_run)
                ),
            )

        services.store.write(logs)


class Clock:
    """Key-to-screen times: a key's start, then the first awaited message after it."""

    def __init__(self) -> None:
        self.started = 0.0
        self.wanted: type[Message] | None = None
        self.seen = asyncio.Event()
        self.took = 0.0

    def hook(self, message: Message) -> None:
        if self.wanted is not None and isinstance(message, self.wanted):
            self.took = (time.perf_counter() - self.started) * 1000
            self.wanted = None
            self.seen.set()

    async def time(
        self, wanted: type[Message], act: Callable[[], Awaitable[None]]
    ) -> float:
        self.seen.clear()
        self.wanted = wanted
        self.started = time.perf_counter()
        await act()
        await asyncio.wait_for(self.seen.wait(), timeout=30)
        return self.took


async def measure(services: Services, stream: Path | None) -> dict[str, float]:
    app = create_app(services, clock=lambda: NOW)
    clock = Clock()
    figures: dict[str, float] = {}
    rss_before = rss_mb()
    clock.wanted = TicketTable.PageShown
    clock.started = time.perf_counter()
    async with app.run_test(size=(120, 40), message_hook=clock.hook) as pilot:
        await asyncio.wait_for(clock.seen.wait(), timeout=60)
        figures["first paint ms"] = clock.took
        table = app.screen.query_one(TicketTable)
        execution_id = None
        if stream is not None:
            execution_id = await services.engine.start(
                "bench-stream", {}, operator="bench"
            )
            await asyncio.sleep(1.0)  # the step is streaming before the first key
        streamed = [0]

        def count(event: object) -> None:
            if isinstance(event, LogBatch):
                streamed[0] += len(event.lines)

        services.engine.bus.subscribe(count)

        async def keys(*names: str) -> float:
            taken = []
            for _ in range(REPEAT):
                for name in names[:-1]:
                    await pilot.press(name)
                taken.append(
                    await clock.time(
                        TicketTable.PageShown, lambda: pilot.press(names[-1])
                    )
                )
            return statistics.median(taken)

        started = time.perf_counter()
        figures["End ms"] = await keys("end")
        figures["Home ms"] = await keys("home")

        async def next_page() -> float:
            await clock.time(TicketTable.PageShown, lambda: pilot.press("home"))
            table.move_cursor(row=table.row_count - 1)
            return await clock.time(TicketTable.PageShown, lambda: pilot.press("down"))

        figures["next page ms"] = statistics.median(
            [await next_page() for _ in range(REPEAT)]
        )

        async def filter_once() -> float:
            await pilot.press("slash", *"priority:P1 status:open")
            took = await clock.time(TicketTable.PageShown, lambda: pilot.press("enter"))
            await pilot.press("slash")
            await clock.time(TicketTable.PageShown, lambda: pilot.press("escape"))
            return took

        figures["filter ms"] = statistics.median(
            [await filter_once() for _ in range(REPEAT)]
        )
        figures["sort ms"] = await keys("s")
        focus = [
            await clock.time(events.Focus, lambda: pilot.press("tab"))
            for _ in range(REPEAT)
        ]
        figures["focus change ms"] = statistics.median(focus)
        elapsed = time.perf_counter() - started
        if execution_id is not None:
            figures["lines/s streamed"] = streamed[0] / elapsed
            await services.engine.cancel(execution_id, actor="bench")
        figures["rows held"] = table.row_count
        figures["RSS growth MB"] = rss_mb() - rss_before
    return figures


def main() -> None:
    tickets = int(sys.argv[1]) if len(sys.argv) > 1 else 250_000
    log_lines = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    rate = int(sys.argv[3]) if len(sys.argv) > 3 else 50_000
    base = Path(tempfile.mkdtemp(prefix="haloterm-bench-"))
    os.environ["XDG_STATE_HOME"] = str(base / "state")
    settings = Settings()
    script = base / "stream.py"
    script.write_text(STREAMER)
    runbook = base / "bench-stream.yaml"
    runbook.write_text(
        textwrap.dedent(RUNBOOK.format(python=sys.executable, script=script, rate=rate))
    )
    rss_start = rss_mb()
    empty = Services.open(
        base / "empty.db", settings=settings, seed=False, operator="bench"
    )
    fill(empty, 150, 0)
    empty.store.close()
    big = Services.open(
        base / "big.db", settings=settings, seed=False, operator="bench"
    )
    big.import_runbook(runbook)
    start = time.perf_counter()
    fill(big, tickets, log_lines)
    fill_s = time.perf_counter() - start
    big.store.close()
    rss_filled = rss_mb()

    def run(name: str, stream: Path | None) -> dict[str, float]:
        services = Services.open(
            base / name, settings=settings, seed=False, operator="bench"
        )
        return asyncio.run(measure(services, stream))

    results = {
        "empty": run("empty.db", None),
        "big": run("big.db", None),
        "big+stream": run("big.db", runbook),
    }
    print(
        f"store: {tickets:,} tickets, {log_lines:,} log lines (filled in"
        f" {fill_s:.0f}s); stream: {rate:,} lines/s"
    )
    print(
        f"{'figure':<18}{'empty':>9}{'big':>9}{'ratio':>7}"
        f"{'big+stream':>12}{'ratio':>7}"
    )
    for name, value in results["empty"].items():
        big_value = results["big"].get(name, float("nan"))
        streaming = results["big+stream"].get(name, float("nan"))
        ratios = [v / value if value else float("nan") for v in (big_value, streaming)]
        print(
            f"{name:<18}{value:>9.1f}{big_value:>9.1f}{ratios[0]:>7.2f}"
            f"{streaming:>12.1f}{ratios[1]:>7.2f}"
        )
    lines = results["big+stream"].get("lines/s streamed", 0.0)
    print(f"log lines through the bus while keys were measured: {lines:,.0f}/s")
    print(
        f"RSS MB: start {rss_start:.0f}, after fill {rss_filled:.0f},"
        f" end {rss_mb():.0f}"
    )


if __name__ == "__main__":
    main()
