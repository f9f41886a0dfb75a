"""Runbook versions: content-hash dedupe, exact round trips, the list's statistics."""

from __future__ import annotations

from typing import Any

from haloterm.models import Runbook
from haloterm.storage import Store
from tests.store.conftest import FakeClock


def runbook(**overrides: Any) -> Runbook:
    data: dict[str, Any] = {
        "name": "restart-web",
        "title": "Restart the web tier",
        "tags": ["web", "incident"],
        "params": {
            "host": {"type": "string", "required": True},
            "token": {"type": "secret", "required": True},
            "count": {"type": "integer", "default": 3, "min": 1, "max": 10},
        },
        "triggers": [
            {"manual": True},
            {"on": "ticket.created", "match": {"priority": ["P1", "P2"]}},
            {"schedule": {"cron": "30 2 * * *", "timezone": "Europe/London"}},
            {"schedule": {"every": "15m"}},
        ],
        "steps": [
            {
                "id": "health",
                "action": "http",
                "with": {"url": "https://{{ params.host }}/healthz"},
                "timeout": "1500ms",
                "retries": {"count": 2, "delay": "1s", "backoff": 2},
                "on_failure": "continue",
            },
            {
                "id": "restart",
                "action": "ssh",
                "timeout": "2m",
                "on_failure": {"goto": "rb"},
            },
            {"id": "rb", "action": "runbook", "only_on_failure": True},
        ],
    }
    data.update(overrides)
    return Runbook.model_validate(data)


def test_save_dedupes_by_content_and_versions_changes(
    store: Store, clock: FakeClock
) -> None:
    first = store.save_runbook(runbook(), "source v1", author="alice")
    again = store.save_runbook(runbook(), "source v1", author="bob")
    assert (first.version, first.created) == (1, True)
    assert (again.version, again.created) == (1, False)
    assert again.content_hash == first.content_hash
    clock.advance(10)
    second = store.save_runbook(runbook(title="Restart"), "source v2", author="bob")
    assert (second.version, second.created) == (2, True)
    assert [v.version for v in store.runbook_versions("restart-web")] == [2, 1]
    actions = [a.action for a in store.list_audit(target_type="runbook")]
    assert actions == ["runbook.save", "runbook.save"]


def test_get_runbook_round_trips_the_definition(store: Store) -> None:
    original = runbook()
    store.save_runbook(original, "v1", author="alice")
    store.save_runbook(runbook(title="Second"), "v2", author="bob")
    latest = store.get_runbook("restart-web")
    pinned = store.get_runbook("restart-web", 1)
    assert latest is not None and pinned is not None
    assert latest.version == 2 and latest.runbook.title == "Second"
    assert pinned.runbook == original
    assert pinned.runbook.steps[0].timeout == 1.5
    assert pinned.runbook.steps[0].retries.delay == 1.0
    assert pinned.source_text == "v1" and pinned.author == "alice"
    assert store.get_runbook("restart-web", 3) is None
    assert store.get_runbook("missing") is None


def test_list_runbooks_with_run_statistics(store: Store, clock: FakeClock) -> None:
    store.save_runbook(runbook(), "v1", author="alice")
    store.save_runbook(runbook(name="other", title=None), "o1", author="alice")
    statuses = ["succeeded", "failed", "succeeded", "running"]
    for status in statuses:
        execution = store.create_execution(
            runbook="restart-web",
            version=1,
            params={},
            secret_params=[],
            trigger="manual",
            operator="alice",
            step_ids=["health"],
        )
        clock.advance(1)
        store.update_execution(execution.id, status=status, started_at=clock())
    summaries = {s.name: s for s in store.list_runbooks()}
    web = summaries["restart-web"]
    assert (web.runs, web.last_status, web.latest_version) == (4, "running", 1)
    assert web.success_rate == 2 / 3
    assert web.last_run_at == clock()
    assert web.tags == ["web", "incident"]
    other = summaries["other"]
    assert (other.title, other.runs, other.success_rate) == ("other", 0, None)
    store.set_runbook_enabled("other", False, actor="bob")
    assert not {s.name: s for s in store.list_runbooks()}["other"].enabled
