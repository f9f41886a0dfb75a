"""Alert intake over real HTTP on loopback (S1, S2, C23, C17d)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from haloterm.automation.clock import ManualClock
from haloterm.automation.service import Automation
from haloterm.automation.worker import serve_intake
from haloterm.config import GenericIntake
from haloterm.services import Services
from tests.automation.conftest import AddRunbook

TOKEN = "intake-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

S1: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}/{severity="critical"}:{alertname="ApiHighErrorRate", '
    'service="checkout-api"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "haloterm-p1",
    "groupLabels": {"alertname": "ApiHighErrorRate", "service": "checkout-api"},
    "commonLabels": {
        "alertname": "ApiHighErrorRate",
        "service": "checkout-api",
        "env": "prod",
        "severity": "critical",
        "priority": "P1",
        "team": "payments",
    },
    "commonAnnotations": {"summary": "checkout-api 5xx ratio above 5% for 5m"},
    "externalURL": "http://alertmanager.monitoring.svc:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "ApiHighErrorRate",
                "service": "checkout-api",
                "env": "prod",
                "severity": "critical",
                "priority": "P1",
                "instance": "app-03.example.internal:8080",
            },
            "annotations": {
                "summary": "checkout-api 5xx ratio above 5% for 5m",
                "description": "5xx ratio is 12.4% on app-03 (threshold 5%).",
            },
            "startsAt": "2025-06-03T14:02:11.482Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.monitoring.svc:9090/graph",
            "fingerprint": "a3c9e1f07b2d4e58",
        }
    ],
}

S2: dict[str, Any] = {
    "event": {
        "id": "01F4Q7X2ZC9V8N3K5M6P7R8S9T",
        "event_type": "incident.triggered",
        "resource_type": "incident",
        "occurred_at": "2025-06-03T14:03:40.120Z",
        "data": {
            "id": "Q1ABCDEF23GHIJ",
            "type": "incident",
            "number": 48213,
            "title": "[FIRING:1] ApiHighErrorRate checkout-api prod",
            "status": "triggered",
            "urgency": "high",
            "priority": {"id": "PPRIO01", "summary": "P1"},
            "incident_key": "a3c9e1f07b2d4e58",
            "html_url": "https://example.pagerduty.com/incidents/Q1ABCDEF23GHIJ",
            "service": {"id": "PSERVICE1", "summary": "checkout-api (prod)"},
        },
    }
}

RULE = """
name: on-p1
params:
  host: {type: string, required: true}
triggers:
  - on: ticket.created
    match: {type: incident, priority: P1}
    params: {host: "{{ ticket.fields.instance_host }}"}
steps:
  - id: s
    action: shell
    with: {command: "echo {{ params.host }}"}
"""


@pytest.fixture
async def url(
    svc: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    clock.set(datetime(2025, 6, 3, 14, 5, tzinfo=UTC))
    monkeypatch.setenv("HALOTERM_INTAKE_TOKEN", TOKEN)
    svc.engine.secrets["pd_signing"] = "pd-secret"
    svc.settings.intake_pagerduty_secret = "pd_signing"
    svc.settings.intake_generic = GenericIntake(
        title="check.name",
        key="check.id",
        priority="level",
        status="state",
        fields={"host": "check.host"},
    )
    svc.settings.intake_max_body = 64 * 1024
    task, server = await serve_intake(svc, "127.0.0.1", 0)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def _post(
    url: str, path: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient() as client:
        return await client.post(
            url + path,
            content=content,
            headers={"Content-Type": "application/json", **(headers or AUTH)},
        )


async def test_s1_opens_one_p1_ticket_and_a_replay_changes_nothing(
    svc: Services, auto: Automation, url: str, add_runbook: AddRunbook
) -> None:
    add_runbook(RULE)
    first = await _post(url, "/hooks/alertmanager", S1)
    assert first.status_code == 202, first.text
    ticket_id = first.json()["tickets"][0]["id"]
    await auto.step(force=True)
    replay = await _post(url, "/hooks/alertmanager", S1)
    assert replay.json()["tickets"] == [{"id": ticket_id, "outcome": "unchanged"}]
    await auto.step(force=True)

    ticket = svc.store.get_ticket(ticket_id)
    assert ticket is not None
    assert ticket.priority == "P1" and ticket.source == "alertmanager"
    assert ticket.external_key == "alertmanager:a3c9e1f07b2d4e58"
    assert ticket.fields["instance_host"] == "app-03.example.internal"
    assert ticket.fields["group_key"] == S1["groupKey"]
    assert "source_clock_ahead" not in ticket.fields
    runs = svc.store.list_executions()
    assert len(runs) == 1 and runs[0].params == {"host": "app-03.example.internal"}
    await svc.engine.wait(runs[0].id)
    kept = svc.store.intake_payloads()
    assert len(kept) == 2 and json.loads(kept[0].body) == S1


async def test_c23_quotes_truncation_and_a_resolved_alert(
    svc: Services, url: str
) -> None:
    await _post(url, "/hooks/alertmanager", S1)
    c23 = copy.deepcopy(S1)
    c23["groupKey"] = '{}/{severity="critical"}:{alertname="ApiDown", env="prod"}'
    c23["truncatedAlerts"] = 37
    c23["orgId"] = 1
    firing = copy.deepcopy(S1["alerts"][0])
    firing["fingerprint"] = "b1b2b3b4b5b6b7b8"
    firing["labels"]["alertname"] = "ApiDown"
    resolved = copy.deepcopy(S1["alerts"][0])
    resolved["status"] = "resolved"
    resolved["endsAt"] = "2025-06-03T14:04:00Z"
    c23["alerts"] = [firing, resolved]

    answer = await _post(url, "/hooks/alertmanager", c23)
    assert answer.status_code == 202
    outcomes = [t["outcome"] for t in answer.json()["tickets"]]
    assert outcomes == ["created", "resolved"]
    new = svc.store.find_ticket_by_key("alertmanager:b1b2b3b4b5b6b7b8")
    assert new is not None and new.fields["group_key"] == c23["groupKey"]
    notes = [e.data.get("text") for e in svc.store.ticket_history(new.id)]
    assert "37 alerts truncated by Alertmanager" in notes
    old = svc.store.find_ticket_by_key("alertmanager:a3c9e1f07b2d4e58")
    assert old is not None
    kinds = [e.kind for e in svc.store.ticket_history(old.id)]
    assert kinds.count("resolved") == 1
    assert "orgId" in json.loads(svc.store.intake_payloads()[0].body)

    again = await _post(url, "/hooks/alertmanager", c23)
    assert [t["outcome"] for t in again.json()["tickets"]] == [
        "unchanged",
        "unchanged",
    ]


async def test_format_3_with_a_numeric_group_key(svc: Services, url: str) -> None:
    v3 = copy.deepcopy(S1)
    v3["version"] = "3"
    v3["groupKey"] = 1234567
    del v3["alerts"][0]["fingerprint"]
    answer = await _post(url, "/hooks/alertmanager", v3)
    assert answer.status_code == 202
    ticket = svc.store.get_ticket(answer.json()["tickets"][0]["id"])
    assert ticket is not None and ticket.fields["group_key"] == "1234567"
    replay = await _post(url, "/hooks/alertmanager", v3)
    assert replay.json()["tickets"][0]["id"] == ticket.id


async def test_c17d_a_source_clock_ahead_is_flagged(
    svc: Services, clock: ManualClock, url: str
) -> None:
    # The alert starts 7 min after the console's clock.
    target = datetime(2025, 6, 3, 13, 55, 11, 482000, tzinfo=UTC)
    clock.jump((target - clock.now()).total_seconds())
    answer = await _post(url, "/hooks/alertmanager", S1)
    ticket = svc.store.get_ticket(answer.json()["tickets"][0]["id"])
    assert ticket is not None
    assert ticket.fields["source_clock_ahead"] == "source clock ahead by 7 min"
    assert ticket.created_at == clock.now()


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({}, S1, 401, "bearer"),
        ({"Authorization": "Bearer wrong"}, S1, 401, "bearer"),
        (AUTH, b"{not json", 400, "Invalid JSON"),
        (AUTH, {"version": "4", "alerts": []}, 400, "alerts"),
        (AUTH, {"alerts": [{"labels": "x"}]}, 400, "labels"),
        (AUTH, b"\xff\xfe", 400, "UTF-8"),
        (AUTH, b"x" * (64 * 1024 + 1), 413, "larger"),
    ],
)
async def test_refused_requests_store_nothing(
    svc: Services,
    url: str,
    headers: dict[str, str],
    body: Any,
    status: int,
    reason: str,
) -> None:
    answer = await _post(url, "/hooks/alertmanager", body, headers or {"X": "y"})
    assert answer.status_code == status
    assert reason in answer.json()["error"]
    assert svc.store.intake_payloads() == []
    assert svc.store.find_ticket_by_key("alertmanager:a3c9e1f07b2d4e58") is None


def _signed(body: bytes, secret: str = "pd-secret") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {**AUTH, "X-PagerDuty-Signature": f"v1=deadbeef,v1={digest}"}


async def test_s2_pagerduty_needs_a_valid_signature(svc: Services, url: str) -> None:
    body = json.dumps(S2).encode()
    bad = await _post(url, "/hooks/pagerduty", body, _signed(body, "other"))
    assert bad.status_code == 401 and "Signature" in bad.json()["error"]
    assert svc.store.intake_payloads() == []

    good = await _post(url, "/hooks/pagerduty", body, _signed(body))
    assert good.status_code == 202
    ticket = svc.store.get_ticket(good.json()["tickets"][0]["id"])
    assert ticket is not None and ticket.priority == "P1"
    assert ticket.title == "[FIRING:1] ApiHighErrorRate checkout-api prod"
    assert ticket.external_key == "pagerduty:Q1ABCDEF23GHIJ"


async def test_s2_joins_the_alertmanager_ticket_of_its_incident_key(
    svc: Services, url: str
) -> None:
    first = await _post(url, "/hooks/alertmanager", S1)
    body = json.dumps(S2).encode()
    answer = await _post(url, "/hooks/pagerduty", body, _signed(body))
    assert answer.json()["tickets"][0]["id"] == first.json()["tickets"][0]["id"]
    ticket = svc.store.get_ticket(first.json()["tickets"][0]["id"])
    assert ticket is not None and ticket.fields["pagerduty_id"] == "Q1ABCDEF23GHIJ"


async def test_generic_mapping(svc: Services, url: str) -> None:
    body = {"check": {"id": "c-1", "name": "[/var] full", "host": "db-2"}}
    answer = await _post(url, "/hooks/generic", {**body, "level": "critical"})
    assert answer.status_code == 202
    ticket = svc.store.get_ticket(answer.json()["tickets"][0]["id"])
    assert ticket is not None
    assert (ticket.title, ticket.priority) == ("[/var] full", "P1")
    assert ticket.fields["host"] == "db-2"
    done = await _post(url, "/hooks/generic", {**body, "state": "resolved"})
    assert done.json()["tickets"][0]["outcome"] == "resolved"
    missing = await _post(url, "/hooks/generic", {"check": {}})
    assert missing.status_code == 400 and "title" in missing.json()["error"]
