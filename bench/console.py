"""First paint and key-to-screen latency of the console: 250k tickets vs an empty store.

Runs the app headless (``run_test``) on two stores built in this run and prints the
figures side by side, with the ratio, and the process's memory before and after.
Usage: ``.venv/bin/python bench/console.py [ticket count]``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HALOTERM_OPERATOR", "bench")

from haloterm.app import create_app
from haloterm.config import Settings
from haloterm.services import Services
from haloterm.widgets.ticket_table import TicketTable

NOW = datetime(2025, 6, 3, 15, 0, tzinfo=UTC)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(services: Services, count: int) -> None:
    def insert(conn: Any) -> None:
        batch = []
        for i in range(count):
            long = i % 10 == 0
            title = ("Long title " * 19)[:200] if long else f"Ticket {i}"
            day = f"2025-0{1 + i % 5}-{1 + i % 28:02d}"
            at = f"{day}T{i % 24:02d}:00:{i % 60:02d}.{i % 1_000_000:06d}+00:00"
            batch.append(
                (
                    title,
                    ["P1", "P2", "P3", "P4"][i % 4],
                    ["open", "resolved"][i % 2],
                    at,
                    at,
                )
            )
            if len(batch) == 50_000:
                conn.executemany(SQL, batch)
                batch.clear()
        conn.executemany(SQL, batch)

    services.store.write(insert)


SQL = (
    "INSERT INTO tickets (title, priority, status, type, description, fields, source,"
    " created_at, updated_at) VALUES (?, ?, ?, 'incident', '', '{}', 'manual', ?, ?)"
)


async def until(pilot: Any, check: Callable[[], bool], limit: float = 2.0) -> None:
    end = time.perf_counter() + limit
    while not check() and time.perf_counter() < end:
        await pilot.pause(0.001)


async def measure(services: Services) -> dict[str, float]:
    app = create_app(services, clock=lambda: NOW)
    figures: dict[str, float] = {}
    started = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(TicketTable)
        await until(pilot, lambda: table.page is not None, limit=30)
        figures["first paint ms"] = (time.perf_counter() - started) * 1000

        async def key(name: str, done: Callable[[], bool]) -> float:
            # Key press to the new page on screen (press itself waits for idle).
            before = table.page
            start = time.perf_counter()
            await pilot.press(name)
            await until(pilot, lambda: table.page is not before and done())
            return (time.perf_counter() - start) * 1000

        figures["End ms"] = await key("end", lambda: True)
        figures["Home ms"] = await key("home", lambda: True)
        table.move_cursor(row=table.row_count - 1)
        figures["next page ms"] = await key("down", lambda: True)
        await pilot.press("slash", *"priority:P1 status:open")
        figures["filter ms"] = await key("enter", lambda: True)
        figures["sort ms"] = await key("s", lambda: True)
        start = time.perf_counter()
        await pilot.press("tab")
        figures["focus change ms"] = (time.perf_counter() - start) * 1000
        figures["rows held"] = table.row_count
    return figures


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 250_000
    base = Path(tempfile.mkdtemp(prefix="haloterm-bench-"))
    os.environ["XDG_STATE_HOME"] = str(base / "state")
    settings = Settings()
    rss_start = rss_mb()
    empty = Services.open(base / "empty.db", settings=settings, seed=False)
    big = Services.open(base / "big.db", settings=settings, seed=False)
    start = time.perf_counter()
    fill(big, count)
    fill_s = time.perf_counter() - start
    rss_filled = rss_mb()
    small = asyncio.run(measure(empty))
    large = asyncio.run(measure(big))
    rss_end = rss_mb()
    print(f"inserted {count:,} tickets in {fill_s:.1f}s")
    print(f"{'figure':<18}{'empty':>12}{f'{count:,} tickets':>18}{'ratio':>9}")
    for name, value in small.items():
        other = large[name]
        ratio = other / value if value else float("nan")
        print(f"{name:<18}{value:>12.1f}{other:>18.1f}{ratio:>9.2f}")
    print(
        f"RSS MB: start {rss_start:.0f}, after insert {rss_filled:.0f},"
        f" end {rss_end:.0f}"
    )


if __name__ == "__main__":
    main()
