"""The ``haloterm`` command: the console, plus headless subcommands.

Headless subcommands never import Textual; only the bare ``haloterm`` (the console)
does. Exit codes: 0 success, 1 a run failed / was cancelled / interrupted or a
decision was refused, 2 invalid input.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from haloterm.config import ConfigError, load_settings
from haloterm.durations import countdown
from haloterm.logsetup import LOG_MASKER, setup_logging
from haloterm.textsafe import safe_json

T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2


class Ctx:
    """Options shared by every subcommand."""

    def __init__(self, db: Path | None) -> None:
        self.db = db


pass_ctx = click.make_pass_decorator(Ctx)


@contextmanager
def services(ctx: Ctx, *, seed: bool = True) -> Iterator[Any]:
    """Open the store and engine for a synchronous command, and close them after."""
    from haloterm.services import Services
    from haloterm.storage import StoreError

    try:
        settings = load_settings()
        setup_logging(settings.log_level)
        svc = Services.open(ctx.db, settings=settings, seed=seed)
    except (ConfigError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield svc
    finally:
        svc.store.close()


def run_async(ctx: Ctx, body: Callable[[Any], Awaitable[T]]) -> T:
    """Open services, start them in a new loop, run ``body(services)``, stop them."""
    from haloterm.services import Services
    from haloterm.storage import StoreError

    try:
        settings = load_settings()
        setup_logging(settings.log_level)
        svc = Services.open(ctx.db, settings=settings)
    except (ConfigError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None

    async def main() -> T:
        await svc.start()
        stop_on_signals(svc)
        try:
            return await body(svc)
        finally:
            await svc.stop()

    return asyncio.run(main())


def stop_on_signals(svc: Any) -> None:
    """Ctrl-C or SIGTERM cancel this process's runs (their processes are stopped and
    the outcome recorded) instead of leaving them ``running`` with orphans behind.
    A second signal of the same kind stops at once."""
    import signal

    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        loop.remove_signal_handler(signum)
        click.echo(f"haloterm: {name}: cancelling this process's runs", err=True)
        for execution_id in svc.engine.active:
            loop.create_task(
                svc.engine.cancel(execution_id, actor=svc.operator, reason=name)
            )

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)


RESET = "\x1b[0m"
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: str, *, one_line: bool = True) -> str:
    """Untrusted text for a terminal: no escape sequence or control survives.

    Ticket titles, fields, reasons and messages come from alerts, people and command
    output; printed raw, an OSC 52 sequence writes the clipboard and a CSI clears the
    screen.
    """
    from haloterm.engine.output import strip_ansi

    text = _CONTROLS.sub("", strip_ansi(text).replace("\r", ""))
    return text.replace("\n", " ⏎ ") if one_line else text


def emit_json(value: Any) -> None:
    click.echo(safe_json(value, indent=2, default=str))


# ----------------------------------------------------------------------- the group


class HalotermGroup(click.Group):
    """Turns the errors bad input can cause anywhere into one line and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        from haloterm.storage import NotFoundError

        try:
            return super().invoke(ctx)
        except NotFoundError as exc:
            click.echo(f"haloterm: {exc}", err=True)
            sys.exit(EXIT_INPUT)
        except UnicodeEncodeError:
            click.echo("haloterm: an argument is not valid UTF-8 text", err=True)
            sys.exit(EXIT_INPUT)
        except OverflowError:
            click.echo("haloterm: a number is too large", err=True)
            sys.exit(EXIT_INPUT)


@click.group(cls=HalotermGroup, invoke_without_command=True)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="HALOTERM_DB",
    help="The store file (default: haloterm.db under your data dir).",
)
@click.version_option(package_name="haloterm")
@click.pass_context
def main(click_ctx: click.Context, db: Path | None) -> None:
    """haloterm: tickets and executable runbooks in your terminal.

    With no command, opens the console.
    """
    click_ctx.obj = Ctx(db)
    if click_ctx.invoked_subcommand is None:
        open_console(click_ctx.obj)


def open_console(ctx: Ctx) -> None:
    """Open the full-screen console on the store."""
    try:
        from haloterm.app import create_app
    except ImportError as exc:  # pragma: no cover - console not installed
        raise click.ClickException(f"the console is not available: {exc}") from None
    from haloterm.services import Services
    from haloterm.storage import StoreError

    try:
        settings = load_settings()
        setup_logging(settings.log_level)
        svc = Services.open(ctx.db, settings=settings)
    except (ConfigError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    create_app(svc, automation=True).run()


# ------------------------------------------------------------------------ runbooks


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Check runbook files without storing them; print every problem found.

    Child-runbook cycles are checked across the files given together.
    """
    from haloterm.loader import (
        LoadError,
        child_references,
        cycle_problem,
        find_cycle,
        load_runbook_file,
        reference_problem,
    )
    from haloterm.models import Runbook
    from haloterm.plugins.registry import default_registry

    registry = default_registry()
    bad = 0
    loaded: dict[str, tuple[Path, Runbook, str]] = {}
    for path in _expand(paths):
        try:
            runbook, text = load_runbook_file(path, registry=registry)
        except LoadError as exc:
            bad += 1
            click.echo(str(exc), err=True)
        except OSError as exc:
            bad += 1
            click.echo(f"{path}: {exc.strerror or exc}", err=True)
        else:
            loaded[runbook.name] = (path, runbook, text)

    def lookup(name: str) -> Runbook | None:
        found = loaded.get(name)
        return found[1] if found else None

    for path, runbook, text in loaded.values():
        cycle = find_cycle(runbook, lookup, registry)
        if cycle:
            bad += 1
            problem = cycle_problem(text, str(path), runbook, registry, cycle)
            click.echo(str(problem), err=True)
            continue
        click.echo(f"{path}: ok ({runbook.name}, {len(runbook.steps)} steps)")
        for _, child in child_references(runbook, registry):
            if child not in loaded:
                note = (
                    f"warning: {child!r} is not among the files checked: it must be "
                    "in the store (haloterm import) before this step runs"
                )
                problem = reference_problem(
                    text, str(path), runbook, registry, child, note
                )
                click.echo(str(problem), err=True)
    if bad:
        sys.exit(EXIT_INPUT)


@main.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_ctx
def import_(ctx: Ctx, paths: tuple[Path, ...]) -> None:
    """Store runbook files; a changed file under an existing name is a new version."""
    from haloterm.loader import LoadError

    bad = 0
    with services(ctx) as svc:
        for path in _expand(paths):
            try:
                saved = svc.import_runbook(path)
            except LoadError as exc:
                bad += 1
                click.echo(str(exc), err=True)
                continue
            except OSError as exc:
                bad += 1
                click.echo(f"{path}: {exc.strerror or exc}", err=True)
                continue
            state = "new version" if saved.created else "unchanged"
            click.echo(f"{saved.name} v{saved.version} ({state})")
    if bad:
        sys.exit(EXIT_INPUT)


def _expand(paths: tuple[Path, ...]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            found.append(path)
    return found


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def runbooks(ctx: Ctx, as_json: bool) -> None:
    """List stored runbooks with their latest version and success rate."""
    with services(ctx) as svc:
        rows = svc.store.list_runbooks()
    if as_json:
        emit_json([r.model_dump(mode="json") for r in rows])
        return
    for r in rows:
        rate = "-" if r.success_rate is None else f"{r.success_rate:.0%}"
        click.echo(
            f"{r.name:32} v{r.latest_version:<3} runs {r.runs:<5} ok {rate:>4}  "
            + r.title
        )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def actions(as_json: bool) -> None:
    """List the step actions installed, and plug-ins that failed to load."""
    from haloterm.plugins.registry import default_registry

    registry = default_registry()
    rows = [
        {"name": n, "description": registry.get(n).description}
        for n in registry.names()
    ]
    broken = [{"name": b.name, "error": b.error} for b in registry.broken]
    if as_json:
        emit_json({"actions": rows, "broken": broken})
        return
    for row in rows:
        click.echo(f"{row['name']:12} {row['description']}")
    for b in broken:
        click.echo(f"{b['name']:12} BROKEN: {b['error']}", err=True)


# --------------------------------------------------------------------------- runs


def _parse_params(pairs: tuple[str, ...], *, option: str = "-p") -> dict[str, str]:
    """``key=value`` pairs; a key given twice is an error, not a silent overwrite."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: use key=value", param_hint=option)
        if key in params:
            raise click.BadParameter(f"{key!r} is given twice", param_hint=option)
        params[key] = value
    return params


class RunPrinter:
    """Prints an execution's step changes and output lines as they happen."""

    def __init__(self, execution_ids: set[int], *, quiet: bool = False) -> None:
        self.ids = execution_ids
        self.quiet = quiet
        self.printed: dict[int, int] = {}
        """The highest line number printed, per execution: a step's stored tail
        comes again at its end, after being shown live. Lines arrive in number
        order, so one number per run bounds memory however long the output."""
        self.tty = sys.stdout.isatty()

    def clean(self, text: str) -> str:
        """On a terminal colours stay, every other control is stripped, and a line
        never leaves its colours on for what follows (the prompt, say)."""
        from haloterm.engine.output import sanitize_for_display

        if self.tty:
            return sanitize_for_display(text) + RESET
        return safe(text)

    def __call__(self, event: Any) -> None:
        from haloterm.engine.events import ExecutionChanged, LogBatch, StepChanged

        if isinstance(event, ExecutionChanged):
            if event.parent_id in self.ids:
                self.ids.add(event.execution_id)
            return
        if self.quiet or getattr(event, "execution_id", None) not in self.ids:
            return
        if isinstance(event, StepChanged):
            where = f"{event.step_id}@{event.host}" if event.host else event.step_id
            tail = f": {safe(event.reason)}" if event.reason else ""
            click.echo(f"[{event.execution_id}] {where} {event.status}{tail}")
        elif isinstance(event, LogBatch):
            last = self.printed.get(event.execution_id, 0)
            for line in event.lines:
                if line.stream != "info" and 0 <= line.seq <= last:
                    continue  # haloterm's own lines (banners, gap markers) show
                last = max(last, line.seq)
                where = f"{line.step_id}@{line.host}" if line.host else line.step_id
                mark = (
                    "!"
                    if line.stream == "stderr"
                    else ("*" if line.stream == "info" else "|")
                )
                click.echo(
                    f"[{line.execution_id}] {where} {mark} {self.clean(line.text)}"
                )
            self.printed[event.execution_id] = last


def _read_secrets(
    svc: Any, name: str, given: dict[str, str], interactive: bool
) -> None:
    stored = svc.store.get_runbook(name)
    if stored is None:
        return
    for param_name in sorted(stored.runbook.secret_params):
        if param_name in given:
            continue
        if param_name in svc.engine.secrets:
            given[param_name] = svc.engine.secrets[param_name]
        elif interactive and sys.stdin.isatty():
            given[param_name] = click.prompt(f"{param_name} (secret)", hide_input=True)
    for param_name in stored.runbook.secret_params:
        if given.get(param_name):
            LOG_MASKER.add(given[param_name])


@main.command()
@click.argument("name")
@click.option("-p", "--param", "pairs", multiple=True, help="A param as key=value.")
@click.option("--ticket", type=int, help="Run against this ticket.")
@click.option("--no-wait", is_flag=True, help="Return once the run waits for approval.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the final execution as JSON."
)
@pass_ctx
def run(
    ctx: Ctx,
    name: str,
    pairs: tuple[str, ...],
    ticket: int | None,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Run a runbook, printing each step's status and output as it happens.

    Secret params come from -p, HALOTERM_SECRET_<NAME>, the secrets file, or a prompt.
    """
    from haloterm.engine import StartError
    from haloterm.models import ExecutionStatus
    from haloterm.params import ParamError

    params = _parse_params(pairs)

    async def body(svc: Any) -> int:
        _read_secrets(svc, name, params, interactive=True)
        ids: set[int] = set()
        unsubscribe = svc.engine.bus.subscribe(RunPrinter(ids, quiet=as_json))
        try:
            try:
                execution_id = await svc.engine.start(
                    name, params, operator=svc.operator, trigger="cli", ticket_id=ticket
                )
            except (StartError, ParamError) as exc:
                click.echo(f"haloterm: {exc}", err=True)
                return EXIT_INPUT
            ids.add(execution_id)
            if not as_json:
                click.echo(f"execution {execution_id} started ({name})")
            if no_wait:
                status = await svc.engine.wait_until(
                    execution_id, {ExecutionStatus.WAITING}
                )
            else:
                status = await svc.engine.wait(execution_id)
        finally:
            unsubscribe()
        return await _report(svc, execution_id, status, as_json)

    sys.exit(run_async(ctx, body))


async def _report(svc: Any, execution_id: int, status: Any, as_json: bool) -> int:
    from haloterm.models import ExecutionStatus

    execution = await svc.store.call(svc.store.get_execution, execution_id)
    if as_json:
        emit_json(_execution_json(svc, execution, with_logs=False))
    else:
        reason = f": {safe(execution.reason)}" if execution.reason else ""
        click.echo(f"execution {execution_id} {execution.status.value}{reason}")
    ok = {ExecutionStatus.SUCCEEDED, ExecutionStatus.WAITING}
    return EXIT_OK if status in ok else EXIT_FAILED


def _execution_json(svc: Any, execution: Any, *, with_logs: bool) -> dict[str, Any]:
    data: dict[str, Any] = execution.model_dump(mode="json")
    data["steps"] = [
        r.model_dump(mode="json") for r in svc.store.step_runs(execution.id)
    ]
    if with_logs:
        data["log"] = [
            {
                "seq": ln.seq,
                "step": ln.step_id,
                "host": ln.host,
                "stream": ln.stream,
                "text": ln.text,
            }
            for ln in svc.store.get_logs(execution.id, limit=100_000)
        ]
    return data


@main.command()
@click.option("--runbook", help="Only this runbook's executions.")
@click.option("--status", help="Only executions with this status.")
@click.option("--ticket", type=int, help="Only executions of this ticket.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def executions(
    ctx: Ctx,
    runbook: str | None,
    status: str | None,
    ticket: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """List executions, newest first."""
    with services(ctx) as svc:
        rows = svc.store.list_executions(
            runbook=runbook, status=status, ticket_id=ticket, limit=limit
        )
    if as_json:
        emit_json([e.model_dump(mode="json") for e in rows])
        return
    for e in rows:
        when = e.created_at.strftime("%Y-%m-%d %H:%M:%S")
        t = f"ticket {e.ticket_id}" if e.ticket_id else ""
        click.echo(
            f"{e.id:>6}  {when}  {e.status.value:<11} {e.runbook:<32} "
            f"{e.operator:<10} {t}"
        )


@main.command()
@click.argument("execution_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def show(ctx: Ctx, execution_id: int, as_json: bool) -> None:
    """Show an execution: its steps, their outcomes, and its log."""

    with services(ctx) as svc:
        execution = svc.store.get_execution(execution_id)
        if execution is None:
            click.echo(f"haloterm: no execution {execution_id}", err=True)
            sys.exit(EXIT_INPUT)
        data = _execution_json(svc, execution, with_logs=True)
    if as_json:
        emit_json(data)
        return
    click.echo(
        f"execution {execution.id}: {execution.runbook} v{execution.version} "
        f"{execution.status.value}"
        + (f" ({safe(execution.reason)})" if execution.reason else "")
    )
    click.echo(f"  operator {execution.operator}, trigger {execution.trigger}")
    if execution.params:
        click.echo(f"  params {safe_json(execution.params)}")
    for step in data["steps"]:
        where = f"{step['step_id']}@{step['host']}" if step["host"] else step["step_id"]
        extra = f" ({safe(step['reason'])})" if step["reason"] else ""
        click.echo(f"  {step['status']:<8} {where}{extra}")
    click.echo("log:")
    for line in data["log"]:
        where = f"{line['step']}@{line['host']}" if line["host"] else line["step"]
        click.echo(f"  {where} {safe(line['text'])}")


@main.command()
@click.argument("execution_id", type=int)
@click.option("--reason", help="Why, for the audit trail.")
@pass_ctx
def cancel(ctx: Ctx, execution_id: int, reason: str | None) -> None:
    """Cancel an execution."""
    from haloterm.engine import StartError

    async def body(svc: Any) -> int:
        try:
            done = await svc.engine.cancel(
                execution_id, actor=svc.operator, reason=reason
            )
        except StartError as exc:
            click.echo(f"haloterm: {exc}", err=True)
            return EXIT_INPUT
        if not done:
            click.echo(f"execution {execution_id} already finished")
            return EXIT_FAILED
        # A run owned by another process stops when its owner takes the request.
        execution = await svc.store.call(svc.store.get_execution, execution_id)
        for _ in range(300):
            if execution is None or execution.status.finished:
                break
            await asyncio.sleep(0.1)
            execution = await svc.store.call(svc.store.get_execution, execution_id)
        status = execution.status.value if execution else "gone"
        if execution is not None and not execution.status.finished:
            click.echo(
                f"execution {execution_id}: cancel requested; its owning process "
                f"has not stopped it yet (status {status})",
                err=True,
            )
            return EXIT_FAILED
        click.echo(f"execution {execution_id} {status}")
        return EXIT_OK

    sys.exit(run_async(ctx, body))


@main.command()
@click.argument("execution_id", type=int)
@click.option("--from", "from_step", help="Continue from this step.")
@pass_ctx
def resume(ctx: Ctx, execution_id: int, from_step: str | None) -> None:
    """Continue an interrupted, failed or waiting execution from a step.

    It runs the runbook version and params it was started with. Secret params
    come from HALOTERM_SECRET_<NAME> or the secrets file, or are asked for when
    this is a terminal.
    """
    sys.exit(run_async(ctx, lambda svc: _continue(svc, execution_id, from_step)))


async def _secrets_for(svc: Any, execution_id: int) -> dict[str, str] | None:
    """Ask for the secret params a run needs again; None when they cannot be had."""
    missing = await svc.engine.missing_secrets(execution_id)
    if not missing:
        return {}
    if not sys.stdin.isatty():
        click.echo(
            f"haloterm: execution {execution_id} needs its secret params again: "
            + ", ".join(missing)
            + " (set HALOTERM_SECRET_<NAME> or the secrets file, or run this in a"
            " terminal to be asked)",
            err=True,
        )
        return None
    given = {}
    for name in missing:
        value = click.prompt(f"{name} (secret)", hide_input=True)
        LOG_MASKER.add(value)
        given[name] = value
    return given


async def _continue(svc: Any, execution_id: int, from_step: str | None) -> int:
    from haloterm.engine import StartError

    secrets = await _secrets_for(svc, execution_id)
    if secrets is None:
        return EXIT_INPUT
    ids = {execution_id}
    unsubscribe = svc.engine.bus.subscribe(RunPrinter(ids))
    try:
        try:
            await svc.engine.adopt(
                execution_id, from_step=from_step, actor=svc.operator, secrets=secrets
            )
        except StartError as exc:
            click.echo(f"haloterm: {exc}", err=True)
            return EXIT_INPUT
        status = await svc.engine.wait(execution_id)
    finally:
        unsubscribe()
    return await _report(svc, execution_id, status, False)


def _decide(
    ctx: Ctx, execution_id: int, step: str, decision: str, comment: str | None
) -> None:
    from haloterm.storage import ApprovalRefused, NotFoundError

    async def body(svc: Any) -> int:
        try:
            approval = await svc.engine.decide(
                execution_id,
                step,
                actor=svc.operator,
                decision=decision,
                comment=comment,
                continue_here=False,
            )
        except ApprovalRefused as exc:
            click.echo(f"haloterm: refused: {exc.reason}", err=True)
            return EXIT_FAILED
        except NotFoundError:
            click.echo(
                f"haloterm: refused: execution {execution_id} has no approval "
                f"step {step}",
                err=True,
            )
            return EXIT_FAILED
        except ValueError as exc:
            click.echo(f"haloterm: {exc}", err=True)
            return EXIT_INPUT
        click.echo(f"{decision} step {step} of execution {execution_id}")
        if approval.status == "waiting":
            got = len({d.by for d in approval.decisions if d.decision == "approved"})
            click.echo(f"{got} of {approval.min_approvals} approvals; waiting for more")
            return EXIT_OK
        return await _continue_here(svc, execution_id)

    sys.exit(run_async(ctx, body))


async def _continue_here(svc: Any, execution_id: int) -> int:
    """Continue a decided run in this process when no other process waits on it."""
    from haloterm.engine import StartError

    missing = await svc.engine.missing_secrets(execution_id)
    if missing and await _secrets_for(svc, execution_id) is None:
        click.echo(
            f"the run waits for a process with its secrets: haloterm resume "
            f"{execution_id}",
            err=True,
        )
        return EXIT_OK
    ids = {execution_id}
    unsubscribe = svc.engine.bus.subscribe(RunPrinter(ids))
    try:
        try:
            took = await svc.engine.continue_decided(execution_id, actor=svc.operator)
        except StartError as exc:
            click.echo(f"haloterm: not continued here: {exc}", err=True)
            return EXIT_OK
        if not took:
            return EXIT_OK
        status = await svc.engine.wait(execution_id)
    finally:
        unsubscribe()
    return await _report(svc, execution_id, status, False)


@main.command()
@click.argument("execution_id", type=int)
@click.argument("step")
@click.option("--comment", help="Why, for the audit trail.")
@pass_ctx
def approve(ctx: Ctx, execution_id: int, step: str, comment: str | None) -> None:
    """Approve a waiting step (and continue the run if no process is waiting on it).

    A refusal exits 1 and says why: not an approver, your own run, timed out, or
    already decided (by whom and when).
    """
    _decide(ctx, execution_id, step, "approved", comment)


@main.command()
@click.argument("execution_id", type=int)
@click.argument("step")
@click.option("--comment", required=True, help="Why (required).")
@pass_ctx
def reject(ctx: Ctx, execution_id: int, step: str, comment: str) -> None:
    """Reject a waiting step, with a comment."""
    if not comment.strip():
        raise click.BadParameter("a rejection needs a comment", param_hint="--comment")
    _decide(ctx, execution_id, step, "rejected", comment)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "show_all", is_flag=True, help="Also those past their deadline.")
@pass_ctx
def approvals(ctx: Ctx, as_json: bool, show_all: bool) -> None:
    """List steps waiting for approval, oldest first.

    Each shows its message, what runs next with which params (secrets masked),
    its deadline and who may decide. Approvals past their deadline are no longer
    offered (``--all`` lists them too).
    """

    with services(ctx) as svc:
        now = svc.store.now()
        rows = svc.store.pending_approvals(offered_at=None if show_all else now)
        roles = svc.settings.roles_of(svc.operator)
        runs = {a.execution_id: svc.store.get_execution(a.execution_id) for a in rows}
    if as_json:
        emit_json([a.model_dump(mode="json") for a in rows])
        return
    if not rows:
        click.echo("no approvals waiting")
    for a in rows:
        run = runs.get(a.execution_id)
        click.echo(
            f"execution {a.execution_id} ({run.runbook if run else '?'}) "
            f"step {a.step_id}, asked by {a.requested_by}"
        )
        click.echo(f"  message:  {safe(a.message)}")
        for entry in a.summary.get("next", []):
            inputs = safe_json(entry.get("with"))
            click.echo(f"  next:     {entry['id']} ({entry['action']}) {inputs}")
        params = a.summary.get("params")
        if params:
            click.echo(f"  params:   {safe_json(params)}")
        click.echo(f"  deadline: {_deadline_text(a, now)}")
        quorum = f" ({a.min_approvals} needed)" if a.min_approvals > 1 else ""
        click.echo(f"  who:      {', '.join(a.approvers)}{quorum}")
        click.echo(f"  you:      {_may_decide_text(a, svc.operator, roles, now)}")


def _deadline_text(approval: Any, now: Any) -> str:
    if approval.deadline is None:
        return "none"
    stamp = f"{approval.deadline:%Y-%m-%d %H:%M:%SZ}"
    left = countdown(approval.deadline, now)
    if left == "overdue":
        return f"{stamp} (timed out; no longer offered)"
    return f"{stamp} ({left} left, then {approval.on_timeout})"


def _may_decide_text(approval: Any, user: str, roles: set[str], now: Any) -> str:
    if approval.timed_out_at(now):
        return "timed out"
    listed = user in approval.approvers or any(
        f"role:{role}" in approval.approvers for role in roles
    )
    if not listed:
        return "not an approver"
    if approval.requested_by == user and not approval.allow_self_approval:
        return "your own run; someone else must decide"
    if any(d.by == user for d in approval.decisions):
        return "already answered"
    return f"may decide: haloterm approve {approval.execution_id} {approval.step_id}"


# ------------------------------------------------------------------- housekeeping


@main.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@pass_ctx
def backup(ctx: Ctx, path: Path) -> None:
    """Copy the store to PATH while it is in use (one consistent snapshot)."""
    from haloterm.storage import StoreError
    from haloterm.storage.housekeeping import backup as backup_store

    with services(ctx, seed=False) as svc:
        try:
            report = backup_store(svc.store, path)
        except StoreError as exc:
            click.echo(f"haloterm: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        svc.store.audit(
            actor=svc.operator,
            action="store.backup",
            target_type="store",
            target_id=str(svc.store.path),
            detail={"to": str(path), "bytes": report.bytes},
        )
    click.echo(
        f"backed up to {report.path}: {report.bytes} bytes, integrity "
        f"{report.integrity}"
    )
    if report.integrity != "ok":
        sys.exit(EXIT_FAILED)


@main.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Age of finished runs whose logs go, e.g. 90d.",
)
@click.option(
    "--include-audit",
    is_flag=True,
    help="Also delete audit records older than that (the purge itself is audited).",
)
@pass_ctx
def purge(ctx: Ctx, older_than: str, include_audit: bool) -> None:
    """Delete stored logs (and spool files) of runs finished long ago."""
    from haloterm.durations import parse_duration
    from haloterm.storage.housekeeping import purge as purge_store

    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    if seconds <= 0:
        raise click.BadParameter("must be positive", param_hint="--older-than")
    with services(ctx, seed=False) as svc:
        report = purge_store(
            svc.store,
            older_than=seconds,
            actor=svc.operator,
            include_audit=include_audit,
            spool_dir=svc.engine.spool_dir,
        )
    click.echo(
        f"purged logs of {report.executions} runs finished before {report.cutoff}: "
        f"{report.log_lines} lines, {report.spool_files} output files"
        + (f", {report.audit_records} audit records" if include_audit else "")
    )


# ------------------------------------------------------------------------ tickets


@main.group()
def ticket() -> None:
    """Create, list and show tickets."""


@ticket.command("new")
@click.option("--title", required=True)
@click.option(
    "--priority",
    type=click.Choice(["P1", "P2", "P3", "P4"]),
    default="P3",
    show_default=True,
)
@click.option(
    "--type",
    "type_",
    type=click.Choice(
        ["incident", "request", "change", "problem", "task", "onboarding"]
    ),
    default="incident",
    show_default=True,
)
@click.option("--category")
@click.option("--description", default="")
@click.option("--field", "fields", multiple=True, help="A field as key=value.")
@pass_ctx
def ticket_new(
    ctx: Ctx,
    title: str,
    priority: str,
    type_: str,
    category: str | None,
    description: str,
    fields: tuple[str, ...],
) -> None:
    """Open a ticket; prints its id alone."""
    values = _parse_params(fields, option="--field")
    if not title.strip():
        raise click.BadParameter("a ticket needs a title", param_hint="--title")
    with services(ctx) as svc:
        ticket_id = svc.store.create_ticket(
            title=title,
            type=type_,
            priority=priority,
            category=category,
            description=description,
            fields=values,
            actor=svc.operator,
        )
    click.echo(ticket_id)


@ticket.command("list")
@click.option(
    "--filter", "filter_text", default="", help='e.g. "priority:P1 status:open".'
)
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def ticket_list(ctx: Ctx, filter_text: str, limit: int, as_json: bool) -> None:
    """List tickets, most recently updated first."""
    from haloterm.storage import parse_ticket_filter

    try:
        query = parse_ticket_filter(filter_text).model_copy(update={"limit": limit})
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--filter") from None
    with services(ctx) as svc:
        page = svc.store.query_tickets(query)
    if as_json:
        emit_json([t.model_dump(mode="json") for t in page.rows])
        return
    for t in page.rows:
        click.echo(
            f"{t.id:>6}  {t.priority}  {t.status:<12} {t.type:<10} {safe(t.title)}"
        )


@ticket.command("show")
@click.argument("ticket_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def ticket_show(ctx: Ctx, ticket_id: int, as_json: bool) -> None:
    """Show a ticket, its history and its executions."""
    with services(ctx) as svc:
        t = svc.store.get_ticket(ticket_id)
        if t is None:
            click.echo(f"haloterm: no ticket {ticket_id}", err=True)
            sys.exit(EXIT_INPUT)
        history = svc.store.ticket_history(ticket_id)
        runs = svc.store.list_executions(ticket_id=ticket_id)
    if as_json:
        data = t.model_dump(mode="json")
        data["history"] = [h.model_dump(mode="json") for h in history]
        data["executions"] = [e.model_dump(mode="json") for e in runs]
        emit_json(data)
        return
    click.echo(f"ticket {t.id} [{t.priority}] {safe(t.title)}")
    category = f", {safe(t.category)}" if t.category else ""
    click.echo(f"  {t.type}, {t.status}{category}")
    for key, value in t.fields.items():
        click.echo(f"  {safe(key)}: {safe(str(value))}")
    if t.description:
        click.echo(f"\n{safe(t.description, one_line=False)}\n")
    for h in history:
        click.echo(
            f"  {h.at:%Y-%m-%d %H:%M:%S} {h.actor}: {h.kind} " + safe_json(h.data)
        )
    for e in runs:
        click.echo(f"  execution {e.id} {e.runbook} {e.status.value}")


# --------------------------------------------------------------------------- audit


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.option("--limit", type=int, default=1000, show_default=True)
@pass_ctx
def audit(ctx: Ctx, as_json: bool, as_csv: bool, limit: int) -> None:
    """Print the audit trail, newest first."""
    with services(ctx) as svc:
        rows = svc.store.list_audit(limit=limit)
    records = [r.model_dump(mode="json") for r in rows]
    if as_json:
        emit_json(records)
        return
    if as_csv:
        out = io.StringIO()
        fields = [
            "id",
            "at",
            "actor",
            "action",
            "target_type",
            "target_id",
            "origin",
            "detail",
        ]
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for rec in records:
            writer.writerow({**rec, "detail": safe_json(rec.get("detail"))})
        click.echo(out.getvalue(), nl=False)
        return
    for r in rows:
        click.echo(
            f"{r.at:%Y-%m-%d %H:%M:%S} {r.actor:<24} {r.action:<20} "
            f"{r.target_type} {r.target_id}"
        )


# --------------------------------------------------------------------------- hosts


@main.group()
def hosts() -> None:
    """SSH host keys haloterm trusts."""


@hosts.command("trust")
@click.argument("host")
@click.option(
    "--port", type=int, help="Port, overriding the inventory and ~/.ssh/config."
)
@pass_ctx
def hosts_trust(ctx: Ctx, host: str, port: int | None) -> None:
    """Fetch HOST's key, show its fingerprint, and trust it (audited).

    A host whose known key differs is refused: that is what an attack looks like.
    """
    from haloterm.plugins.ssh_hosts import HostKeyChanged, HostKeyError, trust_host

    with services(ctx) as svc:
        try:
            keytype, fingerprint = asyncio.run(
                trust_host(
                    host, port, actor=svc.operator, inventory=svc.settings.inventory
                )
            )
        except HostKeyChanged as exc:
            click.echo(f"haloterm: refused: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        except HostKeyError as exc:
            click.echo(f"haloterm: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        svc.store.audit(
            actor=svc.operator,
            action="host.trust",
            target_type="host",
            target_id=host,
            detail={"keytype": keytype, "fingerprint": fingerprint, "port": port},
        )
    click.echo(f"trusted {host}: {keytype} {fingerprint}")


# Automation commands (worker, intake, schedules) attach themselves to `main`.
import haloterm.cli_automation  # noqa: E402, F401
