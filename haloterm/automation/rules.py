"""Ticket-event rules: runbook ``on:`` triggers fired from the store's ticket events.

Every ticket change is already a ``ticket_events`` row. The automation lease holder
reads them in id order after a stored cursor and, in one transaction, records what
each rule decided (fired, suppressed) on the ticket and in the audit and moves the
cursor; a second holder racing it finds the cursor moved and records nothing. So
each event is handled exactly once, and events recorded while no holder runs wait
for the next one. Runs start after that commit; a holder that dies in between
leaves a ``starting`` firing, which the next holder finishes (see
:meth:`RuleRunner.recover`).

Events recorded by the first-run seeding (actor ``haloterm``) are handled without
firing anything, so the demo tickets never start a storm of runs in a fresh
console; create a ticket to see a rule fire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from haloterm.automation.clock import Clock
from haloterm.automation.match import ticket_matches, trigger_params
from haloterm.engine.templates import Renderer, TemplateError
from haloterm.models import Runbook, Ticket, TicketEvent, Trigger
from haloterm.storage.automation import CursorMoved, FiringDecision
from haloterm.storage.records import TicketEvent as TicketEventRow
from haloterm.storage.seed import SEED_ACTOR

if TYPE_CHECKING:
    from haloterm.engine.runner import Engine
    from haloterm.storage import Store

logger = logging.getLogger(__name__)

ACTOR = "automation"
DEFAULT_COOLDOWN = 3600.0
"""Seconds a ``dedupe`` key suppresses repeats when the rule names no cooldown."""
MAX_EVENT_AGE = 24 * 3600.0
"""Events older than this when handled (no holder ran for a day) are suppressed."""
_EVENTS = {
    "created": TicketEvent.CREATED,
    "updated": TicketEvent.UPDATED,
    "priority_changed": TicketEvent.PRIORITY_CHANGED,
    "status_changed": TicketEvent.STATUS_CHANGED,
}


@dataclass(frozen=True)
class _Rule:
    runbook: Runbook
    index: int
    trigger: Trigger


@dataclass
class _Planned:
    decision: FiringDecision
    params: dict[str, Any]


class RuleRunner:
    """Handles ticket events for the automation lease holder.

    Args:
        store: the store.
        engine: the engine that runs what fires.
        clock: the wall clock (cooldowns, event age).
        holder: this process's lease holder id.
        max_event_age: seconds after which an unhandled event no longer fires.
    """

    def __init__(
        self,
        store: Store,
        engine: Engine,
        clock: Clock,
        *,
        holder: str,
        max_event_age: float = MAX_EVENT_AGE,
    ) -> None:
        self.store = store
        self.engine = engine
        self.clock = clock
        self.holder = holder
        self.max_event_age = max_event_age
        self._renderer = Renderer()

    async def process(self, batch: int = 200) -> int:
        """Handle the ticket events after the cursor, one batch.

        Returns:
            How many events were handled (0 when none waited, or another process
            handled them first).
        """
        cursor = await self.store.call(self.store.event_cursor)
        events = await self.store.call(self.store.ticket_events_since, cursor, batch)
        if not events:
            return 0
        rules = await self.store.call(_rules, self.store)
        planned: list[_Planned] = []
        fired_now: dict[tuple[str, int, str], bool] = {}
        for event in events:
            planned += await self._plan(event, rules, fired_now)
        try:
            ids = await self.store.call(
                self.store.record_firings,
                expected_cursor=cursor,
                new_cursor=events[-1].id,
                decisions=[p.decision for p in planned],
                holder=self.holder,
                actor=ACTOR,
            )
        except CursorMoved:
            logger.info("ticket events after %s were handled elsewhere", cursor)
            return 0
        for firing_id, plan in zip(ids, planned, strict=True):
            if plan.decision.status == "starting":
                await self._start(firing_id, plan.decision, plan.params)
        return len(events)

    async def recover(self) -> int:
        """Finish firings a previous holder recorded but died before starting.

        A firing whose run exists (found by its trigger text) is linked to it;
        otherwise its run is started now.

        Returns:
            How many firings were finished.
        """
        pending = await self.store.call(self.store.rule_firings, status="starting")
        rules = await self.store.call(_rules, self.store)
        done = 0
        for firing in pending:
            if firing.holder == self.holder:
                continue
            trigger = f"rule:{firing.id}"
            found = await self.store.call(self.store.execution_id_by_trigger, trigger)
            if found is not None:
                await self.store.call(
                    self.store.finish_firing,
                    firing.id,
                    status="started",
                    execution_id=found,
                )
            else:
                rule = rules.get((firing.runbook, firing.trigger_index))
                ticket = await self._ticket(firing.ticket_id)
                params = {}
                if rule is not None and ticket is not None:
                    params = trigger_params(rule.trigger, ticket, self._renderer)
                await self._start(firing.id, firing, params)
            done += 1
        return done

    async def _plan(
        self,
        event: TicketEventRow,
        rules: dict[tuple[str, int], _Rule],
        fired_now: dict[tuple[str, int, str], bool],
    ) -> list[_Planned]:
        kind = _EVENTS.get(event.kind)
        if kind is None:
            return []
        if event.actor == SEED_ACTOR:
            logger.debug("event %s comes from seeding; no rule fires", event.id)
            return []
        ticket = await self._ticket(event.ticket_id)
        if ticket is None:
            return []
        planned = []
        for rule in rules.values():
            if rule.trigger.on != kind or not ticket_matches(
                ticket, rule.trigger.match
            ):
                continue
            planned.append(await self._decide(event, kind, ticket, rule, fired_now))
        return planned

    async def _decide(
        self,
        event: TicketEventRow,
        kind: TicketEvent,
        ticket: Ticket,
        rule: _Rule,
        fired_now: dict[tuple[str, int, str], bool],
    ) -> _Planned:
        now = self.clock.now()
        base = {
            "event_id": event.id,
            "ticket_id": ticket.id,
            "runbook": rule.runbook.name,
            "trigger_index": rule.index,
            "event": kind.value,
        }
        try:
            key = self._dedupe_key(rule.trigger, ticket)
            params = trigger_params(rule.trigger, ticket, self._renderer)
        except TemplateError as exc:
            reason = f"params or dedupe key did not render: {exc}"
            failed = FiringDecision(**base, status="failed", reason=reason)
            return _Planned(failed, {})
        age = (now - event.at).total_seconds()
        if age > self.max_event_age:
            reason = f"suppressed: event is {age / 3600:.0f} h old (stale)"
            stale = FiringDecision(**base, dedupe_key=key, status="suppressed")
            return _Planned(stale.model_copy(update={"reason": reason}), {})
        if key is not None:
            suppressed = await self._cooldown(rule, key, now, fired_now)
            if suppressed is not None:
                decision = FiringDecision(
                    **base, dedupe_key=key, status="suppressed", reason=suppressed
                )
                return _Planned(decision, {})
            fired_now[(rule.runbook.name, rule.index, key)] = True
        return _Planned(
            FiringDecision(**base, dedupe_key=key, status="starting"), params
        )

    def _dedupe_key(self, trigger: Trigger, ticket: Ticket) -> str | None:
        if trigger.dedupe is None:
            return f"ticket:{ticket.id}" if trigger.cooldown else None
        context = {"ticket": ticket.model_dump(mode="json")}
        return str(self._renderer.render(trigger.dedupe, context).value)

    async def _cooldown(
        self,
        rule: _Rule,
        key: str,
        now: Any,
        fired_now: dict[tuple[str, int, str], bool],
    ) -> str | None:
        cooldown = rule.trigger.cooldown or DEFAULT_COOLDOWN
        if (rule.runbook.name, rule.index, key) in fired_now:
            return f"suppressed: dedupe key {key!r} fired moments ago"
        last = await self.store.call(
            self.store.last_firing_at, rule.runbook.name, rule.index, key
        )
        if last is not None and now - last < timedelta(seconds=cooldown):
            ago = (now - last).total_seconds()
            return (
                f"suppressed: dedupe key {key!r} fired {ago:.0f} s ago"
                f" (cooldown {cooldown:.0f} s)"
            )
        return None

    async def _start(
        self, firing_id: int, decision: FiringDecision, params: dict[str, Any]
    ) -> None:
        stored = await self.store.call(self.store.get_runbook, decision.runbook)
        values = dict(params)
        if stored is not None:
            for name in stored.runbook.secret_params:
                if name in self.engine.secrets and name not in values:
                    values[name] = self.engine.secrets[name]
        try:
            execution_id = await self.engine.start(
                decision.runbook,
                values,
                operator=ACTOR,
                trigger=f"rule:{firing_id}",
                ticket_id=decision.ticket_id,
            )
        except Exception as exc:
            reason = f"could not start: {exc}"
            logger.warning(
                "rule %s#%s %s", decision.runbook, decision.trigger_index, reason
            )
            await self.store.call(
                self.store.finish_firing, firing_id, status="failed", reason=reason
            )
            return
        await self.store.call(
            self.store.finish_firing,
            firing_id,
            status="started",
            execution_id=execution_id,
        )
        logger.info(
            "rule %s#%s fired on ticket %s (%s): execution %s",
            decision.runbook,
            decision.trigger_index,
            decision.ticket_id,
            decision.event,
            execution_id,
        )

    async def _ticket(self, ticket_id: int | None) -> Ticket | None:
        if ticket_id is None:
            return None
        return await self.store.call(self.store.get_ticket, ticket_id)


def _rules(store: Store) -> dict[tuple[str, int], _Rule]:
    rules: dict[tuple[str, int], _Rule] = {}
    for summary in store.list_runbooks():
        if not summary.enabled:
            continue
        stored = store.get_runbook(summary.name)
        if stored is None:
            continue
        for index, trigger in enumerate(stored.runbook.triggers):
            if trigger.on is not None:
                rules[(summary.name, index)] = _Rule(stored.runbook, index, trigger)
    return rules
