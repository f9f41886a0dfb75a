"""Log-line ingest: the store's append_logs + flush against a bare executemany.

Both write the same rows into the same table shape (the store's own schema, indexes
included) in WAL mode, in the same run, so the ratio is what the writer thread, the
batching and the LogLine conversion cost. A second figure streams about 60 MB of
lines through the store and reports how far the process's memory grew.

Run: .venv/bin/python bench/log_ingest.py [--lines 400000] [--mb 60]
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil

from haloterm.engine.events import LogLine
from haloterm.storage import Store
from haloterm.storage.clock import to_text

AT = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
CHUNK = 500
TEXT = "GET /api/v1/orders 200 12ms upstream=app-03 bytes=5312 trace=4bf92f3577b34da6"


def chunks(execution_id: int, total: int, text: str = TEXT) -> Iterator[list[LogLine]]:
    for start in range(1, total + 1, CHUNK):
        stop = min(start + CHUNK, total + 1)
        yield [
            LogLine(execution_id, "step", "", "stdout", seq, AT, text)
            for seq in range(start, stop)
        ]


def via_store(path: Path, total: int) -> float:
    batches = list(chunks(1, total))
    with Store.open(path) as store:
        started = time.perf_counter()
        for batch in batches:
            store.append_logs(batch)
        store.flush()
        elapsed = time.perf_counter() - started
        assert store.log_count(1) == total
    return total / elapsed


def bare_executemany(path: Path, total: int) -> float:
    with Store.open(path):
        pass  # the same schema and indexes
    rows = [
        [
            (x.execution_id, x.seq, x.step_id, x.host, x.stream, to_text(x.at), x.text)
            for x in batch
        ]
        for batch in chunks(1, total)
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    sql = (
        "INSERT INTO log_lines (execution_id, seq, step_id, host, stream, at, text)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    started = time.perf_counter()
    per_txn = 2000 // CHUNK
    for i in range(0, len(rows), per_txn):
        conn.execute("BEGIN IMMEDIATE")
        for batch in rows[i : i + per_txn]:
            conn.executemany(sql, batch)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return total / elapsed


def memory_growth(path: Path, megabytes: int) -> tuple[float, float, float]:
    text = "x" * 99
    total = megabytes * 1024 * 1024 // (len(text) + 1)
    process = psutil.Process()
    before = process.memory_info().rss
    with Store.open(path) as store:
        started = time.perf_counter()
        for batch in chunks(2, total, text):
            store.append_logs(batch)
        store.flush()
        elapsed = time.perf_counter() - started
        after = process.memory_info().rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mb = 1024 * 1024
    return total / elapsed, (after - before) / mb, (peak - before) / mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=400_000)
    parser.add_argument("--mb", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3, help="best of N, interleaved")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # The RSS figure comes first, so no earlier run inflates its peak.
        rate_big, grown, peak = memory_growth(folder / "memory.db", args.mb)
        bare, store = 0.0, 0.0
        for i in range(args.repeat):
            bare = max(bare, bare_executemany(folder / f"bare{i}.db", args.lines))
            store = max(store, via_store(folder / f"store{i}.db", args.lines))
    print(f"{args.lines:,} lines of {len(TEXT)} bytes, best of {args.repeat}:")
    print(f"{'':34}{'lines/s':>12}{'ratio':>8}")
    print(f"{'bare executemany (2000/txn)':34}{bare:>12,.0f}{1.0:>8.2f}")
    print(f"{'Store.append_logs + flush':34}{store:>12,.0f}{store / bare:>8.2f}")
    print()
    print(f"{args.mb} MB of 100-byte lines through the store:")
    print(f"  {rate_big:,.0f} lines/s; RSS grew {grown:.1f} MB (peak +{peak:.1f} MB)")


if __name__ == "__main__":
    main()
