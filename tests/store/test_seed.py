"""First-run seeding: bundled runbooks and demo tickets, imported once."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from haloterm.storage import Store, TicketQuery
from haloterm.storage.seed import seed_if_empty

EXAMPLES = Path(__file__).parents[2] / "haloterm" / "examples"


def examples(tmp_path: Path) -> Path:
    folder = tmp_path / "examples"
    (folder / "runbooks").mkdir(parents=True)
    (folder / "runbooks" / "hello.yaml").write_text(
        "name: hello\ntitle: Say hello\nsteps:\n"
        "  - id: wait\n    action: wait\n    with: {duration: 1s}\n",
        encoding="utf-8",
    )
    (folder / "runbooks" / "broken.yaml").write_text(
        "name: [unclosed\n", encoding="utf-8"
    )
    tickets = [
        {"title": "Disk full on [/var] again", "priority": "P2", "category": "disk"},
        {"title": "New joiner", "type": "onboarding", "fields": {"name": "Ann"}},
    ]
    (folder / "tickets.json").write_text(json.dumps(tickets), encoding="utf-8")
    return folder


def test_seed_once_even_after_the_demo_tickets_are_deleted(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = examples(tmp_path)
    caplog.set_level(logging.WARNING, logger="haloterm.storage.seed")
    report = seed_if_empty(store, folder)
    assert report.seeded and report.tickets == 2
    assert report.runbooks == ["hello"]
    assert [s.split(":")[0] for s in report.skipped] == ["broken.yaml"]
    assert any("broken.yaml" in r.getMessage() for r in caplog.records)
    hello = store.get_runbook("hello")
    assert hello is not None and hello.author == "haloterm"
    ticket = store.get_ticket(1)
    assert ticket is not None and ticket.title == "Disk full on [/var] again"

    store.write(lambda conn: conn.execute("DELETE FROM tickets"))
    again = seed_if_empty(store, folder)
    assert not again.seeded
    assert store.count_tickets(TicketQuery()) == 0


def test_a_store_with_data_is_not_seeded(store: Store, tmp_path: Path) -> None:
    store.create_ticket(title="real work", actor="alice")
    report = seed_if_empty(store, examples(tmp_path))
    assert not report.seeded
    assert store.get_runbook("hello") is None


def test_the_bundled_examples_all_import(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "bundled"
    shutil.copytree(EXAMPLES, folder)
    report = seed_if_empty(store, folder)
    assert report.skipped == []
    bundled = sorted(p.stem for p in (EXAMPLES / "runbooks").glob("*.yaml"))
    assert sorted(report.runbooks) == bundled
    assert report.tickets == len(json.loads((EXAMPLES / "tickets.json").read_text()))
