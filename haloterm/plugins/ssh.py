"""The ``ssh`` action: run one command on many hosts over SSH, in parallel.

How a command runs on each host:

* Host names expand and resolve as :mod:`haloterm.plugins.ssh_hosts` describes; host
  keys are always verified (unknown and changed keys fail the host before anything
  runs).
* One connection per (host, port, user) is kept per execution and reused by its later
  steps. The engine calls :func:`close_pool` when the execution ends; connections idle
  for :data:`IDLE_CLOSE_AFTER` seconds close by themselves in any case.
* The command runs under a small POSIX ``sh`` wrapper (see :data:`WRAPPER`), sent as the
  SSH exec request. The wrapper reports the remote process group, exports the
  environment, and ``exec``\\ s the user's login shell on the command, so exit codes and
  signals are the command's own. Without ``stdin`` the command's stdin is
  ``/dev/null``; there is no tty unless ``tty: true`` (then stdin is the terminal).
* Environment: ``PAGER``/``GIT_PAGER``/``SYSTEMD_PAGER``/``MANPAGER`` are ``cat`` and
  the step's ``env`` is applied, both as wrapper arguments (never through SSH ``env``
  requests, which most servers refuse). Secret variables (``ctx.secret_env``, and any
  ``env`` entry whose value holds a secret) never appear in the command line: the
  wrapper reads them from the channel's stdin (octal-escaped, decoded by the shell's
  ``printf %b`` builtin) before the command starts, and the command then gets
  ``/dev/null`` or the step's ``stdin``.
* Output bytes go to ``ctx.output(stream, host=...)`` as they arrive; nothing is
  decoded here.
* After the exit status arrives, the channel gets :data:`EOF_GRACE` seconds to close;
  a background child still holding stdout does not keep the step running.
* On timeout or cancel the remote process group gets TERM, then KILL after
  ``kill_grace``, both through the SSH ``signal`` request and through ``kill`` run on
  the same connection; if neither can be confirmed, ``ctx.cancel_note`` says so.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import asyncssh
from pydantic import Field, field_validator

from haloterm.durations import format_duration
from haloterm.models import Duration, StepStatus
from haloterm.plugins.base import (
    Action,
    ActionContext,
    ActionError,
    ActionInputs,
    OutputSink,
    StepResult,
)
from haloterm.plugins.ssh_hosts import (
    HostKeyError,
    HostResolutionError,
    HostTarget,
    SshPaths,
    expand_hosts,
    explain_untrusted,
    host_target,
    jump_hosts,
    load_known_hosts,
    resolve,
)

logger = logging.getLogger(__name__)

EOF_GRACE = 1.5
"""Seconds to wait for the channel to close once the exit status has arrived."""
IDLE_CLOSE_AFTER = 300.0
"""Seconds after which a pooled connection nobody uses is closed."""
CONNECTION_LOST = "connection lost (outcome on remote unknown)"
NO_EXIT_STATUS = "no exit status received"
REMOTE_MAY_RUN = "remote may still be running"
PAGER_ENV = {
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "SYSTEMD_PAGER": "cat",
    "MANPAGER": "cat",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OUTCOME = re.compile(r"all|any|at_least:([1-9][0-9]*)")
_MARKER = b"\x1ehaloterm pgid="

WRAPPER = "; ".join(
    [
        "pg=",
        "[ -r /proc/$$/stat ] && read -r _ _ _ _ pg _ </proc/$$/stat",
        '[ "$pg" = "$$" ] || pg=',
        "printf '\\036haloterm pgid=%s\\n' \"$pg\" >&2",
        "c=$1 f=$2",
        "shift 2",
        'for kv in "$@"; do export "$kv"; done',
        'case $f in *s*) IFS= read -r n; while [ "$n" -gt 0 ]; do'
        ' IFS= read -r k; IFS= read -r v; v=$(printf "%bx" "$v");'
        ' export "$k=${v%x}"; n=$((n-1)); done;; esac',
        'case $f in *n*) exec "${SHELL:-/bin/sh}" -c "$c" </dev/null;; esac',
        'exec "${SHELL:-/bin/sh}" -c "$c"',
    ]
)
"""The POSIX sh program every command runs under (one line, so any login shell can
parse the exec request). Arguments: the command, flags (``s``: secrets follow on stdin,
``n``: stdin is /dev/null), then ``NAME=value`` pairs. It first writes a marker line
with its process group id to stderr (empty when it does not lead its group), which the
action strips from the output."""


class SshInputs(ActionInputs):
    """The ``with`` block of an ``ssh`` step."""

    hosts: list[str] = Field(min_length=1)
    """Host names, ``group:<name>`` or ``tag:<t>`` from the inventory."""
    command: str
    """A shell command line, run by the remote user's login shell."""
    user: str | None = None
    """Remote user; default from the inventory, then ``~/.ssh/config``, then local."""
    port: int | None = Field(default=None, ge=1, le=65535)
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment for the command; an entry holding a secret travels the way
    secret params do (over the channel, never in the exec request)."""
    stdin: str | None = None
    """Text fed to the command's stdin; without it, stdin is /dev/null."""
    tty: bool = False
    """Ask for a pseudo-terminal: stdin, stdout and stderr are the terminal (stderr
    merges into stdout). For commands that insist on one; a command that then
    waits for input waits until the step's timeout."""
    concurrency: int = Field(default=50, ge=1, le=10000)
    """How many hosts run at once."""
    outcome: str = "all"
    """``all`` hosts must pass, ``any`` one, or ``at_least:N``."""
    connect_timeout: Duration = 10.0
    keepalive_interval: Duration = 15.0
    keepalive_count_max: int = Field(default=4, ge=1)
    kill_grace: Duration = 5.0
    """Seconds between TERM and KILL when the step is cancelled or times out."""

    @field_validator("outcome")
    @classmethod
    def _check_outcome(cls, value: str) -> str:
        if not _OUTCOME.fullmatch(value):
            raise ValueError('must be "all", "any" or "at_least:N"')
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return value


@dataclass
class HostOutcome:
    """How one host of a step ended."""

    passed: bool
    reason: str | None = None
    exit_code: int | None = None
    signal: str | None = None

    def as_output(self) -> dict[str, Any]:
        status = StepStatus.PASSED if self.passed else StepStatus.FAILED
        return {
            "status": status.value,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "reason": self.reason,
        }


# --------------------------------------------------------------------------- pool


@dataclass
class _Pooled:
    conn: asyncssh.SSHClientConnection
    users: int = 0
    idle_timer: asyncio.TimerHandle | None = None


@dataclass
class _Pool:
    loop: asyncio.AbstractEventLoop
    conns: dict[tuple[str, int | None, str | None], _Pooled] = field(
        default_factory=dict
    )
    locks: dict[tuple[str, int | None, str | None], asyncio.Lock] = field(
        default_factory=dict
    )


_POOLS: dict[int, _Pool] = {}


def _pool_for(execution_id: int) -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(execution_id)
    if pool is None or pool.loop is not loop:
        pool = _POOLS[execution_id] = _Pool(loop)
    return pool


async def close_pool(execution_id: int) -> None:
    """Close every SSH connection kept for an execution.

    The engine calls this once an execution has finished (succeeded, failed,
    cancelled). Connections left open are closed after :data:`IDLE_CLOSE_AFTER`
    seconds without use anyway.
    """
    pool = _POOLS.pop(execution_id, None)
    if pool is None:
        return
    entries = list(pool.conns.values())
    pool.conns.clear()
    for entry in entries:
        if entry.idle_timer is not None:
            entry.idle_timer.cancel()
        entry.conn.close()
    for entry in entries:
        await entry.conn.wait_closed()


def pooled_connections(execution_id: int) -> int:
    """How many connections are kept for an execution (for status screens, tests)."""
    pool = _POOLS.get(execution_id)
    return len(pool.conns) if pool else 0


_CLOSERS: set[asyncio.Task[None]] = set()
"""Tasks closing jump hosts after their connection, held until they are done."""


async def _close_after(
    conn: asyncssh.SSHClientConnection, hops: list[asyncssh.SSHClientConnection]
) -> None:
    """Close a connection's jump hosts once it is closed."""
    await conn.wait_closed()
    for hop in reversed(hops):
        hop.close()


def _close_idle(execution_id: int, key: tuple[str, int | None, str | None]) -> None:
    pool = _POOLS.get(execution_id)
    entry = pool.conns.get(key) if pool else None
    if pool is None or entry is None or entry.users:
        return
    del pool.conns[key]
    entry.conn.close()
    logger.debug("closed idle ssh connection %s (execution %s)", key, execution_id)
    if not pool.conns:
        _POOLS.pop(execution_id, None)


# --------------------------------------------------------------------------- session


class _HostSession(asyncssh.SSHClientSession[bytes]):
    """Streams one command's bytes to the sinks and notes how it ended."""

    def __init__(self, out: OutputSink, err: OutputSink, tty: bool) -> None:
        self.sinks = {"stdout": out, "stderr": err}
        self.marker_stream = "stdout" if tty else "stderr"
        self.marker_buf: bytearray | None = bytearray()
        self.pgid: int | None = None
        self.exit_status: int | None = None
        self.exit_signal: tuple[str, bool] | None = None
        self.exited = asyncio.Event()
        self.closed = asyncio.Event()
        self.lost: Exception | None = None

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        stream = "stdout" if datatype is None else "stderr"
        if stream == self.marker_stream and self.marker_buf is not None:
            data = self._take_marker(data)
        if data:
            self.sinks[stream].write(data)

    def _take_marker(self, data: bytes) -> bytes:
        assert self.marker_buf is not None
        self.marker_buf += data
        buf = bytes(self.marker_buf)
        if not buf.startswith(_MARKER[: len(buf)]) and not buf.startswith(_MARKER):
            self.marker_buf = None
            return buf
        end = buf.find(b"\n")
        if end < 0:
            return b""
        self.marker_buf = None
        value = buf[len(_MARKER) : end].strip()
        self.pgid = int(value) if value.isdigit() else None
        return buf[end + 1 :]

    def eof_received(self) -> bool:
        # Stay half-open: the exit status may still follow the server's EOF.
        return True

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status
        self.exited.set()

    def exit_signal_received(
        self, signal: str, core_dumped: bool, msg: str, lang: str
    ) -> None:
        self.exit_signal = (signal, core_dumped)
        self.exited.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        if self.marker_buf:
            self.sinks[self.marker_stream].write(bytes(self.marker_buf))
            self.marker_buf = None
        self.exited.set()
        self.closed.set()

    def outcome(self) -> HostOutcome:
        if self.exit_signal is not None:
            name, core = self.exit_signal
            return HostOutcome(False, signal_reason(name, core), signal=_sig(name))
        if self.exit_status is not None:
            code = self.exit_status
            return HostOutcome(code == 0, None if code == 0 else f"exit {code}", code)
        if self.lost is not None:
            return HostOutcome(False, CONNECTION_LOST)
        return HostOutcome(False, NO_EXIT_STATUS)


def _sig(name: str) -> str:
    return name if name.startswith("SIG") else f"SIG{name}"


def signal_reason(name: str, core_dumped: bool) -> str:
    """``signal SIGTERM``, or ``signal SIGSEGV (core)`` when the process dumped core."""
    return f"signal {_sig(name)}{' (core)' if core_dumped else ''}"


def _octal(value: str) -> str:
    return "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\0{b:03o}"
        for b in value.encode()
    )


def build_exec(
    command: str, env: Mapping[str, str], *, secrets: bool, stdin_null: bool
) -> str:
    """The exec request for ``command``: the wrapper, the command and the plain env.

    Secret values are never part of it; ``secrets`` only tells the wrapper to read
    them from stdin first.
    """
    flags = ("s" if secrets else "") + ("n" if stdin_null else "") or "-"
    pairs = [f"{name}={value}" for name, value in env.items()]
    args = [command, flags, *pairs]
    return "exec /bin/sh -c " + " ".join(
        shlex.quote(a) for a in [WRAPPER, "haloterm", *args]
    )


def _secret_env(inputs: SshInputs, ctx: ActionContext) -> dict[str, str]:
    """The variables that must not travel in the exec request: the command's secret
    params, and any ``env`` entry whose value holds a secret."""
    found = dict(ctx.secret_env)
    for name, value in inputs.env.items():
        if ctx.mask(value) != value:
            found[name] = value
    return found


def secret_header(secret_env: Mapping[str, str]) -> bytes:
    """What the wrapper reads from stdin before the command starts."""
    lines = [str(len(secret_env))]
    for name, value in secret_env.items():
        lines += [name, _octal(value)]
    return ("\n".join(lines) + "\n").encode("ascii")


# --------------------------------------------------------------------------- action


@dataclass
class _Run:
    """Everything shared by the hosts of one attempt."""

    inputs: SshInputs
    ctx: ActionContext
    paths: SshPaths
    known: asyncssh.SSHKnownHosts
    semaphore: asyncio.Semaphore
    unconfirmed: list[str] = field(default_factory=list)


class SshAction(Action):
    """Run a command on hosts over SSH, in parallel, with verified host keys."""

    name: ClassVar[str] = "ssh"
    Inputs: ClassVar[type[ActionInputs]] = SshInputs
    command_fields: ClassVar[frozenset[str]] = frozenset({"command"})
    description: ClassVar[str] = "Run a command on hosts over SSH"

    def __init__(self, paths: SshPaths | None = None) -> None:
        self.paths = paths

    async def release(self, execution_id: int) -> None:
        await close_pool(execution_id)

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        """Run the command on every host; see the module docstring for how.

        Returns:
            Passed or failed by the ``outcome`` policy; outputs ``hosts`` (per host
            ``status``, ``exit_code``, ``signal``, ``reason``) and, for one host,
            ``exit_code``.

        Raises:
            ActionError: the hosts cannot be resolved, or secrets were asked for with a
                tty.
            asyncio.CancelledError: after stopping the remote commands.
        """
        assert isinstance(inputs, SshInputs)
        inventory = getattr(ctx.config, "inventory", None) or {}
        groups = getattr(ctx.config, "groups", None) or {}
        try:
            names = expand_hosts(inputs.hosts, inventory, groups)
        except HostResolutionError as exc:
            raise ActionError(str(exc)) from None
        if inputs.tty and _secret_env(inputs, ctx):
            raise ActionError(
                "secrets cannot be passed to a tty session (its input is echoed); "
                "set tty: false"
            )

        paths = self.paths or SshPaths.default()
        known = await asyncio.to_thread(load_known_hosts, paths)
        run = _Run(inputs, ctx, paths, known, asyncio.Semaphore(inputs.concurrency))
        targets = [
            host_target(n, inventory, port=inputs.port, user=inputs.user) for n in names
        ]
        tasks = [asyncio.ensure_future(self._host(run, t)) for t in targets]
        try:
            outcomes = await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            await asyncio.gather(*tasks, return_exceptions=True)
            if run.unconfirmed:
                ctx.cancel_note = REMOTE_MAY_RUN
            raise
        return _result(names, outcomes, inputs.outcome)

    async def _host(self, run: _Run, target: HostTarget) -> HostOutcome:
        ctx = run.ctx
        async with run.semaphore:
            await ctx.set_host_status(target.name, StepStatus.RUNNING)
            try:
                outcome = await self._run_on(run, target)
            except ActionError as exc:
                outcome = HostOutcome(False, exc.reason)
            except asyncio.CancelledError:
                note = REMOTE_MAY_RUN if target.name in run.unconfirmed else None
                reason = f"cancelled ({note})" if note else "cancelled"
                await ctx.set_host_status(target.name, StepStatus.FAILED, reason=reason)
                raise
            status = StepStatus.PASSED if outcome.passed else StepStatus.FAILED
            await ctx.set_host_status(
                target.name,
                status,
                reason=outcome.reason,
                exit_code=outcome.exit_code,
                signal=outcome.signal,
            )
            return outcome

    async def _run_on(self, run: _Run, target: HostTarget) -> HostOutcome:
        key = (target.connect_host, target.port, target.user)
        pool = _pool_for(run.ctx.execution_id)
        conn = await self._acquire(run, pool, target, key)
        try:
            return await self._exec(run, target, conn)
        finally:
            self._release(run.ctx.execution_id, pool, key)

    async def _acquire(
        self,
        run: _Run,
        pool: _Pool,
        target: HostTarget,
        key: tuple[str, int | None, str | None],
    ) -> asyncssh.SSHClientConnection:
        lock = pool.locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = pool.conns.get(key)
            if entry is not None and entry.conn.is_closed():
                del pool.conns[key]
                entry = None
            if entry is None:
                conn = await self._connect(run, target)
                entry = pool.conns[key] = _Pooled(conn)
            if entry.idle_timer is not None:
                entry.idle_timer.cancel()
                entry.idle_timer = None
            entry.users += 1
            return entry.conn

    def _release(
        self, execution_id: int, pool: _Pool, key: tuple[str, int | None, str | None]
    ) -> None:
        entry = pool.conns.get(key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users == 0:
            entry.idle_timer = pool.loop.call_later(
                IDLE_CLOSE_AFTER, _close_idle, execution_id, key
            )

    async def _connect(
        self, run: _Run, target: HostTarget
    ) -> asyncssh.SSHClientConnection:
        ctx = run.ctx
        ctx.info(f"connecting to {target.name}", host=target.name)
        hops: list[asyncssh.SSHClientConnection] = []
        try:
            # Jump hosts (ProxyJump) are connected here, not by asyncssh, so their
            # keys are checked against the same known hosts, haloterm's trust file
            # included, and `haloterm hosts trust` can vouch for them.
            try:
                jumps = jump_hosts(await resolve(target, run.paths))
            except HostResolutionError as exc:
                raise ActionError(str(exc)) from None
            for jump in jumps:
                try:
                    tunnel = hops[-1] if hops else None
                    hops.append(await self._open(run, jump, tunnel=tunnel, jump=True))
                except ActionError as exc:
                    raise ActionError(
                        f"jump host {jump.name} (ProxyJump of {target.name}): {exc}"
                    ) from None
            conn = await self._open(run, target, tunnel=hops[-1] if hops else None)
        except BaseException:
            for opened in reversed(hops):
                opened.close()
            raise
        if hops:
            closer = asyncio.get_running_loop().create_task(_close_after(conn, hops))
            _CLOSERS.add(closer)
            closer.add_done_callback(_CLOSERS.discard)
        return conn

    async def _open(
        self,
        run: _Run,
        target: HostTarget,
        *,
        tunnel: asyncssh.SSHClientConnection | None,
        jump: bool = False,
    ) -> asyncssh.SSHClientConnection:
        inputs = run.inputs
        try:
            return await asyncssh.connect(
                target.connect_host,
                target.port if target.port is not None else (),
                tunnel=tunnel if tunnel is not None else (),
                config=run.paths.config_files(),
                username=target.user if target.user is not None else (),
                known_hosts=run.known,
                connect_timeout=inputs.connect_timeout,
                keepalive_interval=inputs.keepalive_interval,
                keepalive_count_max=inputs.keepalive_count_max,
                encoding=None,
            )
        except asyncssh.HostKeyNotVerifiable:
            resolved = await resolve(target, run.paths)
            error = await explain_untrusted(
                target.name,
                resolved,
                run.known,
                trust_port=target.port if jump else None,
            )
            if isinstance(error, HostKeyError):
                raise ActionError(error.reason) from None
            raise
        except asyncssh.PermissionDenied:
            raise ActionError(
                f"authentication failed for {target.name} (no accepted key)"
            ) from None
        except TimeoutError:
            raise ActionError(
                f"connect timeout after {format_duration(inputs.connect_timeout)}"
            ) from None
        except asyncssh.Error as exc:
            raise ActionError(f"ssh connection failed: {exc.reason}") from None
        except OSError as exc:
            raise ActionError(
                f"cannot connect to {target.name}: {exc.strerror or exc}"
            ) from None

    async def _exec(
        self, run: _Run, target: HostTarget, conn: asyncssh.SSHClientConnection
    ) -> HostOutcome:
        inputs, ctx = run.inputs, run.ctx
        out = ctx.output("stdout", host=target.name)
        err = ctx.output("stderr", host=target.name)
        session = _HostSession(out, err, inputs.tty)
        secret_env = _secret_env(inputs, ctx)
        plain_env = {
            **ctx.command_env,
            **{k: v for k, v in inputs.env.items() if k not in secret_env},
        }
        secrets = bool(secret_env)
        command = build_exec(
            inputs.command,
            {**PAGER_ENV, **plain_env},
            secrets=secrets,
            # On a tty, stdin is the terminal too: the command asked for one.
            stdin_null=inputs.stdin is None and not inputs.tty,
        )
        try:
            chan, _ = await asyncio.wait_for(
                conn.create_session(
                    lambda: session,
                    command,
                    encoding=None,
                    request_pty="force" if inputs.tty else False,
                    term_type="xterm" if inputs.tty else None,
                    term_size=(200, 50) if inputs.tty else None,
                ),
                inputs.connect_timeout,
            )
        except TimeoutError:
            conn.close()
            raise ActionError(CONNECTION_LOST) from None
        except (asyncssh.Error, OSError) as exc:
            out.close()
            err.close()
            reason = getattr(exc, "reason", None) or str(exc)
            raise ActionError(f"cannot start the command: {reason}") from None

        try:
            if secrets:
                chan.write(secret_header(secret_env))
            if inputs.stdin is not None:
                chan.write(inputs.stdin.encode())
            chan.write_eof()
            await self._wait(session, chan)
        except asyncio.CancelledError:
            if not await self._stop(run, conn, chan, session):
                run.unconfirmed.append(target.name)
            raise
        finally:
            out.close()
            err.close()
        return session.outcome()

    async def _wait(
        self, session: _HostSession, chan: asyncssh.SSHClientChannel[bytes]
    ) -> None:
        await session.exited.wait()
        if session.closed.is_set():
            return
        # A background child may hold stdout open for good; the status is final.
        try:
            await asyncio.wait_for(session.closed.wait(), EOF_GRACE)
        except TimeoutError:
            chan.close()
            await _wait_event(session.closed, 2.0)

    async def _stop(
        self,
        run: _Run,
        conn: asyncssh.SSHClientConnection,
        chan: asyncssh.SSHClientChannel[bytes],
        session: _HostSession,
    ) -> bool:
        """TERM, then KILL, the remote command; True when its end is confirmed."""
        grace = run.inputs.kill_grace
        ended = session.exited.is_set()
        for sig, wait in (("TERM", grace), ("KILL", 2.0)):
            if ended:
                break
            await self._signal(conn, chan, session, sig)
            ended = await _wait_event(session.exited, wait)
        if ended and session.pgid:
            # The leader is gone; sweep the rest of its group.
            await self._group_kill(conn, session.pgid, "KILL")
        chan.close()
        return ended and (session.lost is None or session.exit_status is not None)

    async def _signal(
        self,
        conn: asyncssh.SSHClientConnection,
        chan: asyncssh.SSHClientChannel[bytes],
        session: _HostSession,
        sig: str,
    ) -> None:
        try:
            chan.send_signal(sig)
        except (OSError, asyncssh.Error):
            logger.debug("signal %s could not be sent on the channel", sig)
        if session.pgid:
            await self._group_kill(conn, session.pgid, sig)

    async def _group_kill(
        self, conn: asyncssh.SSHClientConnection, pgid: int, sig: str
    ) -> bool:
        command = f"kill -s {sig} -- -{pgid} 2>/dev/null"
        try:
            result = await asyncio.wait_for(
                conn.run(command, stdin=asyncssh.DEVNULL, encoding=None), 3.0
            )
        except (TimeoutError, OSError, asyncssh.Error):
            return False
        return result.exit_status == 0


async def _wait_event(event: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _result(
    names: Sequence[str], outcomes: Sequence[HostOutcome], policy: str
) -> StepResult:
    hosts = {n: o.as_output() for n, o in zip(names, outcomes, strict=True)}
    passed_count = sum(o.passed for o in outcomes)
    if policy == "all":
        needed = len(outcomes)
    elif policy == "any":
        needed = 1
    else:
        needed = int(policy.split(":", 1)[1])
    passed = passed_count >= needed

    if len(outcomes) == 1:
        only = outcomes[0]
        result = StepResult(
            passed=passed,
            reason=None if passed else only.reason,
            exit_code=only.exit_code,
            signal=only.signal,
            outputs={"hosts": hosts, "exit_code": only.exit_code},
        )
        return result
    failed = [(n, o) for n, o in zip(names, outcomes, strict=True) if not o.passed]
    summary = None
    if failed:
        shown = ", ".join(f"{n} {o.reason}" for n, o in failed[:5])
        more = f", and {len(failed) - 5} more" if len(failed) > 5 else ""
        summary = f"{len(failed)} of {len(outcomes)} hosts failed: {shown}{more}"
    reason = None if passed else summary
    return StepResult(passed=passed, reason=reason, outputs={"hosts": hosts})
