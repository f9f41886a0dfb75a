"""Automation commands: ``worker``, ``intake`` and ``schedules``.

Attached to :data:`haloterm.cli.main` by an import at the end of ``cli.py``.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

import click

from haloterm.cli import EXIT_INPUT, Ctx, emit_json, main, pass_ctx, services
from haloterm.config import ConfigError, load_settings
from haloterm.logsetup import setup_logging


def _open_headless(ctx: Ctx) -> Any:
    """Open the store for a service (worker, intake). Nothing is seeded: the demo
    tickets and the examples' rules have no place in a store that runs unattended."""
    from haloterm.services import Services
    from haloterm.storage import StoreError

    try:
        settings = load_settings()
        setup_logging(settings.log_level, stderr=True)
        return Services.open(ctx.db, settings=settings, seed=False)
    except (ConfigError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None


def _listen(text: str | None) -> tuple[str, int] | None:
    from haloterm.automation.worker import parse_listen

    if text is None:
        return None
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None


@main.command()
@click.option("--listen", metavar="HOST:PORT", help="Also serve alert intake here.")
@click.option(
    "--drain-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds running executions get to finish after SIGTERM.",
)
@pass_ctx
def worker(ctx: Ctx, listen: str | None, drain_timeout: float) -> None:
    """Run the engine and automation headless, logging to stderr.

    Competes for the automation lease (rules and schedules fire in one process at a
    time). On SIGTERM it releases the lease at once, hands waiting executions over,
    lets running ones finish for up to --drain-timeout seconds, and marks any still
    running interrupted (resumable).
    """
    from haloterm.automation.worker import run_worker

    address = _listen(listen)
    svc = _open_headless(ctx)

    async def body() -> None:
        await svc.start()
        try:
            await run_worker(svc, listen=address, drain_timeout=drain_timeout)
        finally:
            await svc.stop()

    try:
        asyncio.run(body())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--listen", metavar="HOST:PORT", required=True)
@pass_ctx
def intake(ctx: Ctx, listen: str) -> None:
    """Serve alert intake: POST /hooks/alertmanager, /hooks/pagerduty, /hooks/generic.

    Every request needs "Authorization: Bearer <token>" (HALOTERM_INTAKE_TOKEN, or
    the secret named by intake_token_secret). Tickets are stored here; rules fire
    in whichever process holds the automation lease.
    """
    from haloterm.automation.worker import serve_intake

    address = _listen(listen)
    assert address is not None
    svc = _open_headless(ctx)

    async def body() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await svc.start()
        try:
            task, server = await serve_intake(svc, *address)
            await stop.wait()
            server.should_exit = True
            await task
        finally:
            await svc.stop()

    try:
        asyncio.run(body())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


# ----------------------------------------------------------------------- schedules


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def schedules(click_ctx: click.Context, as_json: bool) -> None:
    """List schedules with their next fire times, and who runs them."""
    if click_ctx.invoked_subcommand is not None:
        return
    from haloterm.automation.overview import schedule_overview

    ctx = click_ctx.find_object(Ctx)
    assert ctx is not None
    with services(ctx) as svc:
        overview = schedule_overview(svc.store)
    rows: list[dict[str, Any]] = []
    for entry in overview.rows:
        if entry.error is not None:
            continue
        nxt = entry.fires[0] if entry.fires else None
        rows.append(
            {
                "id": entry.id,
                "runbook": entry.runbook,
                "cron": entry.cron,
                "every": entry.every,
                "timezone": entry.timezone,
                "paused": entry.paused,
                "next": nxt.at.isoformat() if nxt else None,
                "next_local": entry.local(nxt) if nxt else None,
                "note": nxt.note if nxt else None,
            }
        )
    rows += [{"id": r.id, "error": r.error} for r in overview.rows if r.error]
    holder = overview.holder
    if as_json:
        emit_json(
            {
                "lease": holder.model_dump(mode="json") if holder else None,
                "schedules": rows,
            }
        )
        return
    click.echo(overview.holder_line())
    for row in rows:
        if "error" in row:
            click.echo(f"{row['id']:<32} cannot run: {row['error']}")
            continue
        what = row["cron"] or f"every {row['every']:g}s"
        state = "paused" if row["paused"] else f"next {row['next_local']}"
        note = f"  ({row['note']})" if row["note"] else ""
        click.echo(f"{row['id']:<32} {what:<16} {row['timezone']:<16} {state}{note}")


@schedules.command("preview")
@click.argument("cron")
@click.option("--timezone", "tz", default="UTC", show_default=True)
@click.option("--from", "start", help="ISO instant with offset (default: now).")
@click.option("--count", type=click.IntRange(1, 1000), default=5, show_default=True)
def schedules_preview(cron: str, tz: str, start: str | None, count: int) -> None:
    """Print the next COUNT fires of CRON, one ISO instant with offset per line."""
    from haloterm.automation.schedules import ScheduleError, next_fires
    from haloterm.models import Schedule

    try:
        begin = datetime.fromisoformat(start) if start else datetime.now(UTC)
        if begin.tzinfo is None:
            raise ValueError("--from needs an offset, e.g. 2025-03-29T12:00+01:00")
        fires = next_fires(Schedule(cron=cron, timezone=tz), begin, count)
    except (ScheduleError, ValueError) as exc:
        click.echo(f"haloterm: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    from haloterm.automation.schedules import zone

    for fire in fires:
        click.echo(fire.at.astimezone(zone(tz)).isoformat())
        if fire.note:
            click.echo(f"note: {fire.note}", err=True)


def _set_paused(ctx: Ctx, schedule_id: str, paused: bool) -> None:
    from haloterm.automation.overview import known_schedule

    with services(ctx) as svc:
        if not known_schedule(svc.store, schedule_id):
            click.echo(
                f"haloterm: no schedule {schedule_id!r} (see `haloterm schedules`)",
                err=True,
            )
            sys.exit(EXIT_INPUT)
        svc.store.set_schedule_paused(schedule_id, paused, actor=svc.operator)
    click.echo(f"{schedule_id} {'paused' if paused else 'resumed'}")


@schedules.command("pause")
@click.argument("schedule_id")
@pass_ctx
def schedules_pause(ctx: Ctx, schedule_id: str) -> None:
    """Stop SCHEDULE_ID (``<runbook>#<n>``) from firing until resumed."""
    _set_paused(ctx, schedule_id, True)


@schedules.command("resume")
@click.argument("schedule_id")
@pass_ctx
def schedules_resume(ctx: Ctx, schedule_id: str) -> None:
    """Let SCHEDULE_ID fire again from its next slot (slots passed are not run)."""
    _set_paused(ctx, schedule_id, False)
