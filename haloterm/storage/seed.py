"""First-run content: the bundled example runbooks and demo tickets, imported once."""

from __future__ import annotations

import importlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from haloterm.storage.records import SeedReport
from haloterm.storage.store import Store

logger = logging.getLogger(__name__)

SEED_KEY = "seeded_at"
SEED_ACTOR = "haloterm"
_TICKET_KEYS = {
    "title",
    "type",
    "priority",
    "description",
    "category",
    "fields",
    "source",
    "external_key",
}


def seed_if_empty(
    store: Store, examples_dir: Path, *, registry: Any = None
) -> SeedReport:
    """Import the example runbooks and demo tickets into a store that never had them.

    Seeding happens once per store: the first process to claim it records that in
    the ``meta`` table, so deleting the demo tickets later does not bring them back,
    and two consoles starting together do not both seed. A store that already holds
    tickets or runbooks is not seeded.

    Args:
        store: the store.
        examples_dir: the folder holding ``runbooks/*.yaml`` and ``tickets.json``.
        registry: the action registry the runbook loader validates steps against.

    Returns:
        What was imported; ``seeded`` is False when seeding had happened already.
    """
    now = store.now().isoformat()

    def claim(conn: sqlite3.Connection) -> bool:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (SEED_KEY, now)
        )
        if cursor.rowcount == 0:
            return False
        used = conn.execute(
            "SELECT (SELECT count(*) FROM tickets) + (SELECT count(*) FROM runbooks)"
        ).fetchone()[0]
        return int(used) == 0

    if not store.write(claim):
        return SeedReport(seeded=False)
    report = SeedReport(seeded=True)
    _seed_runbooks(store, examples_dir / "runbooks", registry, report)
    _seed_tickets(store, examples_dir / "tickets.json", report)
    logger.info(
        "seeded %s: %d runbooks, %d tickets",
        store.path,
        len(report.runbooks),
        report.tickets,
    )
    return report


def _seed_runbooks(
    store: Store, folder: Path, registry: Any, report: SeedReport
) -> None:
    try:
        loader = importlib.import_module("haloterm.loader")
    except ImportError as exc:
        logger.warning("example runbooks not imported: no runbook loader (%s)", exc)
        return
    for path in sorted(folder.glob("*.yaml")):
        try:
            loaded = loader.load_runbook_file(path, registry=registry)
            if isinstance(loaded, tuple):
                runbook, source = loaded
            else:
                runbook, source = loaded, path.read_text(encoding="utf-8")
            store.save_runbook(runbook, source, author=SEED_ACTOR)
        except Exception as exc:
            logger.warning("example runbook %s not imported: %s", path.name, exc)
            report.skipped.append(f"{path.name}: {exc}")
            continue
        report.runbooks.append(runbook.name)


def _seed_tickets(store: Store, path: Path, report: SeedReport) -> None:
    if not path.exists():
        return
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("demo tickets not imported from %s: %s", path, exc)
        report.skipped.append(f"{path.name}: {exc}")
        return
    for item in items:
        fields = {k: v for k, v in item.items() if k in _TICKET_KEYS}
        try:
            store.create_ticket(**fields, actor=SEED_ACTOR)
        except Exception as exc:
            logger.warning("demo ticket %r not imported: %s", item.get("title"), exc)
            report.skipped.append(f"{path.name}: {exc}")
            continue
        report.tickets += 1
