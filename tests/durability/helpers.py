"""Helpers for tests that run haloterm in real child processes and kill them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_env(db: Path, user: str = "alice") -> dict[str, str]:
    """The environment of a haloterm child process on the store ``db``."""
    env = {**os.environ, "HALOTERM_DB": str(db), "HALOTERM_OPERATOR": user}
    env["PYTHONPATH"] = str(ROOT)
    return env


def spawn_script(
    db: Path, body: str, *, user: str = "alice", **popen: object
) -> subprocess.Popen[bytes]:
    """Run a Python snippet in a child process with haloterm importable."""
    code = textwrap.dedent(body)
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", code],
        env=child_env(db, user),
        cwd=str(ROOT),
        **popen,
    )


def wait_for(
    check: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05
) -> None:
    """Poll ``check`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of a store file, read on a fresh connection."""
    conn = sqlite3.connect(str(db))
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def scalar(db: Path, sql: str, *params: object) -> object:
    """One value from the store, read on a fresh connection."""
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        row = conn.execute(sql, params).fetchone()
        return None if row is None else row[0]
    finally:
        conn.close()
