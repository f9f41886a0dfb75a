"""Alert intake over HTTP: Alertmanager, PagerDuty and generic JSON webhooks.

A firing alert opens (or updates) a ticket keyed by the alert's fingerprint
(``external_key``), so replays never open a second ticket and never fire a second
``ticket.created`` rule; a resolved alert adds a ``resolved`` event to its ticket.
Every request needs ``Authorization: Bearer <token>``; PagerDuty requests also need
a valid ``X-PagerDuty-Signature``, checked before the body is parsed. Malformed or
oversized bodies get 400/413 with the reason, and nothing is stored. Payload text is
data: it reaches SQLite only as bound parameters and the screen only as plain text.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from haloterm.models import PRIORITIES
from haloterm.storage.errors import StoreError

if TYPE_CHECKING:
    from haloterm.config import GenericIntake
    from haloterm.storage import Store

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""Largest request body accepted, in bytes."""
CLOCK_AHEAD_TOLERANCE = timedelta(seconds=60)
_SEVERITY = {"critical": "P1", "error": "P2", "high": "P2", "warning": "P3"}
_SEVERITY |= {"low": "P4", "info": "P4"}


class IntakeError(ValueError):
    """A request that cannot be taken: its HTTP status and the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --------------------------------------------------------------------- payloads


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Alert(_Loose):
    """One alert of an Alertmanager webhook."""

    status: str = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str | None = None
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str | None = None

    def key(self) -> str:
        """The fingerprint, or (format 3) a hash of the sorted labels."""
        if self.fingerprint:
            return self.fingerprint
        text = json.dumps(sorted(self.labels.items()), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class AlertmanagerPayload(_Loose):
    """An Alertmanager webhook body, format 4 (format 3 accepted)."""

    version: str = "4"
    groupKey: str = ""
    truncatedAlerts: int = 0
    status: str = "firing"
    receiver: str = ""
    externalURL: str | None = None
    alerts: list[Alert] = Field(min_length=1)

    @field_validator("version", "groupKey", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        # Format 3 sent numbers here; format 4 sends opaque strings.
        return str(value) if isinstance(value, int | float) else value


# --------------------------------------------------------------------- tickets


class Intake:
    """Turns accepted payloads into tickets on the store (blocking; use a thread).

    Args:
        store: the store.
        generic: how ``/hooks/generic`` bodies map to tickets.
    """

    def __init__(self, store: Store, generic: GenericIntake | None = None) -> None:
        self.store = store
        self.generic = generic

    def alertmanager(self, payload: AlertmanagerPayload, body: str) -> dict[str, Any]:
        """Open, update or resolve one ticket per alert of an Alertmanager body."""
        outcome: dict[str, Any] = {"source": "alertmanager", "tickets": []}
        payload_id = self.store.record_intake("alertmanager", body, {}, actor=_ACTOR)
        for alert in payload.alerts:
            ticket_id, what = self._alert(alert, payload, payload_id)
            outcome["tickets"].append({"id": ticket_id, "outcome": what})
        outcome["payload"] = payload_id
        return outcome

    def _alert(
        self, alert: Alert, payload: AlertmanagerPayload, payload_id: int
    ) -> tuple[int | None, str]:
        key = f"alertmanager:{alert.key()}"
        labels = {**payload_labels(payload), **alert.labels}
        fields: dict[str, Any] = {
            **labels,
            **{f"annotation_{k}": v for k, v in alert.annotations.items()},
        }
        fields |= {"fingerprint": alert.key(), "group_key": payload.groupKey}
        fields |= {"starts_at": alert.startsAt, "intake_payload": payload_id}
        if alert.generatorURL:
            fields["generator_url"] = alert.generatorURL
        if "instance" in labels:
            fields["instance_host"] = labels["instance"].rsplit(":", 1)[0]
        notes = []
        if payload.truncatedAlerts:
            fields["truncated_alerts"] = payload.truncatedAlerts
            notes.append(f"{payload.truncatedAlerts} alerts truncated by Alertmanager")
        ahead = self._clock_ahead(alert.startsAt)
        if ahead:
            fields["source_clock_ahead"] = ahead
            notes.append(ahead)
        # The status decides; an endsAt of 0001-01-01 only says "still firing".
        if alert.status == "resolved":
            return self._resolve(key, alert.endsAt, payload_id)
        title = alert.annotations.get("summary") or labels.get("alertname", "alert")
        return self._open(
            key,
            title=title,
            priority=alert_priority(labels),
            description=_describe(alert.annotations),
            category=labels.get("category"),
            fields=fields,
            notes=notes,
            source="alertmanager",
        )

    def _open(
        self,
        key: str,
        *,
        title: str,
        priority: str,
        description: str,
        category: str | None,
        fields: dict[str, Any],
        notes: list[str],
        source: str,
    ) -> tuple[int, str]:
        existing = self.store.find_ticket_by_key(key)
        if existing is None:
            try:
                ticket_id = self.store.create_ticket(
                    title=(title.strip() or f"{source} alert")[:500],
                    priority=priority,
                    description=description,
                    category=category,
                    fields=fields,
                    source=source,
                    external_key=key,
                    actor=_ACTOR,
                )
            except StoreError:
                # Another request created it a moment ago: update that one.
                existing = self.store.find_ticket_by_key(key)
                if existing is None:
                    raise
            else:
                for note in notes:
                    self.store.update_ticket(ticket_id, note=note, actor=_ACTOR)
                return ticket_id, "created"
        changes = {k: v for k, v in fields.items() if existing.fields.get(k) != v}
        changes.pop("intake_payload", None)
        if not changes:
            return existing.id, "unchanged"
        new_notes = [n for n in notes if n not in _noted(existing.fields)]
        reopen = existing.status in ("resolved", "closed") and ("starts_at" in changes)
        self.store.update_ticket(
            existing.id,
            fields=fields,
            status="open" if reopen else None,
            note="; ".join(new_notes) or ("alert firing again" if reopen else None),
            actor=_ACTOR,
        )
        return existing.id, "reopened" if reopen else "updated"

    def _resolve(
        self, key: str, ends_at: str | None, payload_id: int
    ) -> tuple[int | None, str]:
        existing = self.store.find_ticket_by_key(key)
        if existing is None:
            return None, "resolved alert without a ticket: ignored"
        history = self.store.ticket_history(existing.id)
        if any(
            e.kind == "resolved" and e.data.get("ends_at") == ends_at for e in history
        ):
            return existing.id, "unchanged"
        data = {"ends_at": ends_at, "intake_payload": payload_id}
        self.store.add_ticket_event(
            existing.id, kind="resolved", data=data, actor=_ACTOR
        )
        return existing.id, "resolved"

    def _clock_ahead(self, starts_at: str | None) -> str | None:
        if not starts_at:
            return None
        try:
            start = datetime.fromisoformat(starts_at.replace("Z", "+00:00"))
        except ValueError:
            return None
        if start.tzinfo is None:
            return None
        ahead = start - self.store.now()
        if ahead <= CLOCK_AHEAD_TOLERANCE:
            return None
        return f"source clock ahead by {round(ahead.total_seconds() / 60)} min"

    def pagerduty(self, data: dict[str, Any], body: str) -> dict[str, Any]:
        """Open, update or resolve a ticket from a PagerDuty v3 webhook or an
        Events API v2 event."""
        if "event_action" in data:
            return self._pagerduty_v2(data, body)
        event = data.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
            raise IntakeError(400, "not a PagerDuty v3 webhook: no event.data object")
        incident: dict[str, Any] = event["data"]
        kind = str(event.get("event_type", ""))
        payload_id = self.store.record_intake("pagerduty", body, {}, actor=_ACTOR)
        key = f"pagerduty:{incident.get('id') or incident.get('incident_key')}"
        incident_key = incident.get("incident_key")
        if incident_key and self.store.find_ticket_by_key(
            f"alertmanager:{incident_key}"
        ):
            key = f"alertmanager:{incident_key}"
        if kind == "incident.resolved":
            ticket_id, what = self._resolve(key, event.get("occurred_at"), payload_id)
        else:
            priority = (incident.get("priority") or {}).get("summary")
            if priority not in PRIORITIES:
                priority = "P2" if incident.get("urgency") == "high" else "P4"
            fields = {
                "pagerduty_id": incident.get("id"),
                "pagerduty_url": incident.get("html_url"),
                "pagerduty_status": incident.get("status"),
                "service": (incident.get("service") or {}).get("summary"),
                "incident_key": incident_key,
                "intake_payload": payload_id,
            }
            ticket_id, what = self._open(
                key,
                title=str(incident.get("title") or "PagerDuty incident"),
                priority=str(priority),
                description="",
                category=None,
                fields=fields,
                notes=[],
                source="pagerduty",
            )
        return {
            "source": "pagerduty",
            "payload": payload_id,
            "tickets": [{"id": ticket_id, "outcome": what}],
        }

    def _pagerduty_v2(self, data: dict[str, Any], body: str) -> dict[str, Any]:
        # The routing key is a credential: it is dropped before anything is kept.
        kept = {k: v for k, v in data.items() if k != "routing_key"}
        payload_id = self.store.record_intake(
            "pagerduty", json.dumps(kept, ensure_ascii=False), {}, actor=_ACTOR
        )
        dedup = str(data.get("dedup_key") or "")
        if not dedup:
            raise IntakeError(400, "an Events API v2 event needs a dedup_key")
        key = f"pagerduty:{dedup}"
        given = data.get("payload")
        inner: dict[str, Any] = given if isinstance(given, dict) else {}
        if data.get("event_action") == "resolve":
            ticket_id, what = self._resolve(key, None, payload_id)
        else:
            severity = str(inner.get("severity", "")).lower()
            ticket_id, what = self._open(
                key,
                title=str(inner.get("summary") or "PagerDuty event"),
                priority=_SEVERITY.get(severity, "P3"),
                description="",
                category=None,
                fields={"source_host": inner.get("source"), "dedup_key": dedup},
                notes=[],
                source="pagerduty",
            )
        return {
            "source": "pagerduty",
            "payload": payload_id,
            "tickets": [{"id": ticket_id, "outcome": what}],
        }

    def generic_event(self, data: dict[str, Any], body: str) -> dict[str, Any]:
        """Open, update or resolve a ticket from any JSON body, through the mapping
        in the config file (``[intake_generic]``)."""
        mapping = self.generic
        if mapping is None:
            raise IntakeError(404, "no generic intake mapping is configured")
        title = pick(data, mapping.title)
        if not title:
            raise IntakeError(400, f"no title at {mapping.title!r}")
        key_value = pick(data, mapping.key) if mapping.key else None
        payload_id = self.store.record_intake("generic", body, {}, actor=_ACTOR)
        key = f"generic:{key_value}" if key_value else f"generic:payload-{payload_id}"
        status = str(pick(data, mapping.status) or "") if mapping.status else ""
        if status.lower() in ("resolved", "ok", "closed"):
            ticket_id, what = self._resolve(key, None, payload_id)
        else:
            priority = (
                str(pick(data, mapping.priority) or "") if mapping.priority else ""
            )
            priority = (
                priority.upper()
                if priority.upper() in PRIORITIES
                else (_SEVERITY.get(priority.lower(), mapping.default_priority))
            )
            fields = {name: pick(data, path) for name, path in mapping.fields.items()}
            fields["intake_payload"] = payload_id
            ticket_id, what = self._open(
                key,
                title=str(title),
                priority=priority,
                description=str(pick(data, mapping.description) or "")
                if mapping.description
                else "",
                category=str(pick(data, mapping.category) or "") or None
                if mapping.category
                else None,
                fields=fields,
                notes=[],
                source="generic",
            )
        return {
            "source": "generic",
            "payload": payload_id,
            "tickets": [{"id": ticket_id, "outcome": what}],
        }


_ACTOR = "intake"


def payload_labels(payload: AlertmanagerPayload) -> dict[str, str]:
    """Labels every alert of a body shares (``commonLabels``), when sent."""
    extra = payload.model_extra or {}
    common = extra.get("commonLabels")
    return (
        {str(k): str(v) for k, v in common.items()} if isinstance(common, dict) else {}
    )


def alert_priority(labels: dict[str, str]) -> str:
    """``P1``..``P4`` from a ``priority`` label, else from ``severity``; else P3."""
    given = labels.get("priority", "").upper()
    if given in PRIORITIES:
        return given
    return _SEVERITY.get(labels.get("severity", "").lower(), "P3")


def pick(data: Any, path: str | None) -> Any:
    """The value at a dotted path (``alert.labels.host``) of JSON data, or None."""
    if not path:
        return None
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _describe(annotations: dict[str, str]) -> str:
    parts = [annotations.get("summary", ""), annotations.get("description", "")]
    if "runbook_url" in annotations:
        parts.append(f"Runbook: {annotations['runbook_url']}")
    return "\n\n".join(p for p in parts if p)


def _noted(fields: dict[str, Any]) -> list[str]:
    return [str(fields[k]) for k in ("source_clock_ahead",) if k in fields] + (
        [f"{fields['truncated_alerts']} alerts truncated by Alertmanager"]
        if "truncated_alerts" in fields
        else []
    )


# --------------------------------------------------------------------- HTTP


def verify_pagerduty(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``X-PagerDuty-Signature`` holds a ``v1=`` HMAC-SHA256 of the body."""
    if not header:
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    for part in header.split(","):
        version, _, signature = part.strip().partition("=")
        if version == "v1" and hmac.compare_digest(signature.strip(), expected):
            return True
    return False


def create_app(
    intake: Intake,
    *,
    token: str,
    pagerduty_secret: str | None = None,
    max_body: int = MAX_BODY,
) -> Starlette:
    """The intake ASGI app (serve it with uvicorn).

    Args:
        intake: where accepted payloads go.
        token: the bearer token every request must carry.
        pagerduty_secret: the PagerDuty webhook signing secret; without it,
            ``/hooks/pagerduty`` refuses every request.
        max_body: the largest body accepted, in bytes.

    Raises:
        ValueError: the token is empty.
    """
    if not token:
        raise ValueError("the intake needs a bearer token")
    expected = f"Bearer {token}".encode()

    async def guarded(
        request: Request, handle: Callable[[bytes], Awaitable[dict[str, Any]]]
    ) -> JSONResponse:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return _error(401, "missing or wrong bearer token")
        try:
            body = await _read(request, max_body)
            outcome = await handle(body)
        except IntakeError as exc:
            return _error(exc.status, exc.reason)
        except Exception:
            logger.exception("intake request failed")
            return _error(500, "intake failed; see the haloterm log")
        return JSONResponse({"accepted": True, **outcome}, status_code=202)

    async def alertmanager(request: Request) -> JSONResponse:
        async def handle(body: bytes) -> dict[str, Any]:
            text = _text(body)
            try:
                payload = AlertmanagerPayload.model_validate_json(text)
            except ValidationError as exc:
                raise IntakeError(400, _problems(exc)) from None
            return await intake.store.call(intake.alertmanager, payload, text)

        return await guarded(request, handle)

    async def pagerduty(request: Request) -> JSONResponse:
        async def handle(body: bytes) -> dict[str, Any]:
            if pagerduty_secret is None:
                raise IntakeError(401, "no PagerDuty signing secret is configured")
            signature = request.headers.get("x-pagerduty-signature")
            if not verify_pagerduty(body, signature, pagerduty_secret):
                raise IntakeError(401, "bad or missing X-PagerDuty-Signature")
            text = _text(body)
            return await intake.store.call(intake.pagerduty, _object(text), text)

        return await guarded(request, handle)

    async def generic(request: Request) -> JSONResponse:
        async def handle(body: bytes) -> dict[str, Any]:
            text = _text(body)
            return await intake.store.call(intake.generic_event, _object(text), text)

        return await guarded(request, handle)

    return Starlette(
        routes=[
            Route("/hooks/alertmanager", alertmanager, methods=["POST"]),
            Route("/hooks/pagerduty", pagerduty, methods=["POST"]),
            Route("/hooks/generic", generic, methods=["POST"]),
        ]
    )


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise IntakeError(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IntakeError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise IntakeError(400, "body is not UTF-8") from None


def _object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise IntakeError(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise IntakeError(400, "body must be a JSON object")
    return data


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
        for err in exc.errors()[:5]
    )


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"accepted": False, "error": reason}, status_code=status)
