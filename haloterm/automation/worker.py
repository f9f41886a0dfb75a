"""``haloterm worker``: the engine and automation without a screen.

The worker competes for the automation lease like any console, runs what rules and
schedules start, and (with ``--listen``) serves alert intake. On SIGTERM or SIGINT
it drains:

1. it stops taking work: intake stops answering and the automation lease is
   released at once, so another console or worker takes it over within a couple of
   seconds;
2. executions waiting for an approval are handed over straight away: they need no
   process, and whoever decides continues them;
3. running executions get up to ``drain_timeout`` seconds to finish; any still
   running then are stopped and marked ``interrupted``, to be resumed from their
   step by any console (``haloterm resume``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from haloterm.automation.clock import SystemClock
from haloterm.automation.service import Automation
from haloterm.models import ExecutionStatus

if TYPE_CHECKING:
    from haloterm.services import Services

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT = 60.0


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as a host and a port.

    Raises:
        ValueError: not HOST:PORT with a port in 0..65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def intake_token(svc: Services) -> str | None:
    """The intake bearer token: the secret named by ``intake_token_secret``, else
    ``HALOTERM_INTAKE_TOKEN``."""
    name = svc.settings.intake_token_secret
    if name and svc.engine.secrets.get(name):
        return svc.engine.secrets[name]
    return os.environ.get("HALOTERM_INTAKE_TOKEN") or None


async def serve_intake(
    svc: Services, host: str, port: int
) -> tuple[asyncio.Task[None], Any]:
    """Start the intake HTTP server in this loop.

    Returns:
        The serving task and the uvicorn server (set ``should_exit`` to stop it).

    Raises:
        ValueError: no intake token is configured.
    """
    import uvicorn

    from haloterm.automation.intake import Intake, create_app

    token = intake_token(svc)
    if not token:
        raise ValueError(
            "no intake token: set HALOTERM_INTAKE_TOKEN or name a secret in"
            " intake_token_secret"
        )
    pd_name = svc.settings.intake_pagerduty_secret
    app = create_app(
        Intake(svc.store, svc.settings.intake_generic),
        token=token,
        pagerduty_secret=svc.engine.secrets.get(pd_name) if pd_name else None,
        max_body=svc.settings.intake_max_body,
    )
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="intake")
    # uvicorn offers no "started" event; poll its flag while watching the task.
    while not server.started and not task.done():
        await asyncio.wait({task}, timeout=0.02)
    if task.done():
        task.result()
    for sock in server.servers[0].sockets if server.servers else []:
        logger.info("intake listening on %s", sock.getsockname()[:2])
    return task, server


async def run_worker(
    svc: Services,
    *,
    listen: tuple[str, int] | None = None,
    drain_timeout: float = DRAIN_TIMEOUT,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``), then drain as the module says.

    Args:
        svc: open services (started here, stopped by the caller).
        listen: serve alert intake on this host and port.
        drain_timeout: seconds running executions get to finish at shutdown.
        stop: set it to stop the worker (tests); signals set it too.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    automation = Automation(
        svc.store,
        svc.engine,
        holder=svc.owner_id,
        user=svc.operator,
        clock=SystemClock(),
    )
    await automation.start()
    server_task: asyncio.Task[None] | None = None
    server: Any = None
    if listen is not None:
        server_task, server = await serve_intake(svc, *listen)
    logger.info("worker ready: pid %d, store %s", os.getpid(), svc.store.path)

    await stop.wait()
    logger.info("worker draining")
    if server_task is not None:
        server.should_exit = True
        await server_task
    automation.pause()
    await automation.stop(release=True)
    await _drain(svc, drain_timeout)
    logger.info("worker stopped")


async def _drain(svc: Services, limit: float) -> None:
    engine = svc.engine
    running = []
    for execution_id in engine.active:
        execution = await svc.store.call(svc.store.get_execution, execution_id)
        if execution is not None and execution.status is not ExecutionStatus.WAITING:
            running.append(execution_id)
    if not running:
        return
    logger.info("waiting up to %.0f s for executions %s", limit, running)
    waits = [asyncio.create_task(engine.wait(i)) for i in running]
    _, pending = await asyncio.wait(waits, timeout=limit)
    for task in pending:
        task.cancel()
    left = [i for i in running if i in engine.active]
    if not left:
        return
    reason = "the worker stopped before it finished; resume it from this step"
    for execution_id in left:
        await engine.cancel(execution_id, actor="worker", reason="drain timeout")
        await svc.store.call(
            svc.store.update_execution,
            execution_id,
            status=ExecutionStatus.INTERRUPTED.value,
            reason=reason,
        )
    logger.warning("executions %s interrupted at shutdown", left)
