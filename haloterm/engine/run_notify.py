"""Runbook-level notifications: a run tells channels that it started, succeeded,
failed or waits for approval.

Each event's messages are sent by the ``notify`` action's own code, as background
tasks of the run, so a slow webhook never holds a step up. The engine awaits them
(each for at most :data:`NOTIFY_TIMEOUT` seconds) before it publishes the run's final
status, so the deliveries of a finished run are done, and its log tells how they went.
A failed notification is logged (WARNING, and an info line of the run) and never
changes the run's outcome.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from haloterm.engine.context import EngineContext
from haloterm.engine.templates import TemplateError
from haloterm.models import RunEvent, RunNotify
from haloterm.plugins.base import ActionError
from haloterm.plugins.notify import NotifyAction, NotifyInputs, Severity

if TYPE_CHECKING:
    from haloterm.engine.runner import Engine, RunState

logger = logging.getLogger(__name__)

NOTIFY_TIMEOUT = 10.0
"""Seconds one runbook-level notification may take before it counts as failed."""

_SEVERITY: dict[str, Severity] = {
    "start": "info",
    "success": "info",
    "failure": "error",
    "waiting": "warning",
}


def default_message(event: RunEvent, context: dict[str, Any]) -> str:
    """The text sent when an entry has no ``message``."""
    title = context["runbook"]["title"]
    execution = context["execution"]
    run = f"run #{execution['id']}"
    if event == "start":
        return f"▶ {title} started ({run} by {execution['operator']})"
    if event == "success":
        return f"✔ {title} succeeded ({run})"
    if event == "waiting":
        return f"⏸ {title} waits for approval at step {execution['step']} ({run})"
    verb = "was cancelled" if execution["status"] == "cancelled" else "failed"
    return f"✘ {title} {verb} ({run}): {execution['reason'] or 'no reason given'}"


def announce(
    engine: Engine,
    run: RunState,
    event: RunEvent,
    *,
    status: str,
    reason: str | None = None,
    step: str | None = None,
) -> None:
    """Start sending ``event`` to every channel of the runbook that asks for it."""
    entries = [entry for entry in run.runbook.notify if event in entry.on]
    if not entries:
        return
    extra = {"status": status, "reason": reason, "step": step}
    # One run's notices go out in the order they happened: a slow "started" must
    # not reach the channel after "succeeded".
    previous = run.notify_tasks[-1] if run.notify_tasks else None
    task = asyncio.create_task(
        _send_all(engine, run, event, entries, extra, after=previous),
        name=f"execution-{run.execution_id}-notify-{event}",
    )
    run.notify_tasks.append(task)


async def settle(run: RunState) -> None:
    """Wait for the run's notifications in flight (each is bounded in time)."""
    while run.notify_tasks:
        tasks, run.notify_tasks = run.notify_tasks, []
        await asyncio.gather(*tasks, return_exceptions=True)


async def _send_all(
    engine: Engine,
    run: RunState,
    event: RunEvent,
    entries: list[RunNotify],
    extra: dict[str, Any],
    *,
    after: asyncio.Task[None] | None,
) -> None:
    if after is not None:
        await asyncio.wait({after})
    context = engine._template_context(run, await engine._ticket(run.ticket_id))
    context["execution"] = {**context["execution"], **extra}
    await asyncio.gather(
        *(_send(engine, run, event, entry, context) for entry in entries)
    )


async def _send(
    engine: Engine,
    run: RunState,
    event: RunEvent,
    entry: RunNotify,
    context: dict[str, Any],
) -> None:
    step_id = f"notify:{event}"
    ctx = EngineContext(engine, run, step_id, 1, None, {}, {})
    action = (
        engine.registry.get("notify") if "notify" in engine.registry else NotifyAction()
    )
    failure: str | None = None
    try:
        texts = {"message": entry.message, "title": entry.title}
        rendered = engine.renderer.render(
            {k: v for k, v in texts.items() if v is not None}, context
        ).value
        message = rendered.get("message") or default_message(event, context)
        inputs = NotifyInputs(
            channel=entry.channel,
            message=run.masker.mask(str(message)),
            title=run.masker.mask(str(rendered["title"]))
            if rendered.get("title")
            else None,
            severity=_SEVERITY[event],
        )
        async with asyncio.timeout(NOTIFY_TIMEOUT):
            result = await action.run(inputs, ctx)
        if not result.passed:
            failure = result.reason or "failed"
    except TemplateError as exc:
        failure = f"template: {exc}"
    except ActionError as exc:
        failure = str(exc)
    except TimeoutError:
        failure = f"timeout after {NOTIFY_TIMEOUT:g}s"
    except Exception as exc:  # a notification never fails the run
        logger.exception("execution %s: %s notification", run.execution_id, event)
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        ctx.close_outputs()
    if failure is not None:
        failure = run.masker.mask(failure)
        logger.warning(
            "execution %s: %s notification to %s failed: %s",
            run.execution_id,
            event,
            entry.channel,
            failure,
        )
        engine._info(run, step_id, f"notification to {entry.channel} failed: {failure}")
