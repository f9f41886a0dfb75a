"""Local child processes for actions: own process group, exact exit status, clean stop.

:class:`LocalProcess` starts a command in a new session (so it leads its own process
group), streams its stdout and stderr bytes straight into output sinks with no
buffering of its own, and reaps the child itself. Reaping here, rather than through
asyncio's child watcher, keeps the whole wait status, so a signal that dumped a core
is told apart from one that did not (``signal SIGSEGV (core)``). On Linux the exit is
noticed through a pidfd; elsewhere by polling ``waitpid``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from haloterm.plugins.base import OutputSink
from haloterm.procgroups import group_members_alive, signal_group

logger = logging.getLogger(__name__)

_POLL = 0.05


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15; ``SIG42`` for a number with no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended: an exit code, or a signal (and whether it dumped a core).

    Attributes:
        exit_code: the exit status (0-255), None when killed by a signal.
        signal: the signal's name when killed by one.
        core: the kernel wrote a core dump.
    """

    exit_code: int | None
    signal: str | None = None
    core: bool = False

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        """Decode a raw ``waitpid`` status."""
        if os.WIFSIGNALED(status):
            name = signal_name(os.WTERMSIG(status))
            return cls(None, name, os.WCOREDUMP(status))
        return cls(os.WEXITSTATUS(status))

    @property
    def reason(self) -> str:
        """``exit 3``, ``signal SIGTERM`` or ``signal SIGSEGV (core)``."""
        if self.signal is None:
            return f"exit {self.exit_code}"
        return f"signal {self.signal}" + (" (core)" if self.core else "")


class _Reader(asyncio.Protocol):
    """Hands each chunk read from a pipe to a sink as it arrives."""

    def __init__(self, sink: OutputSink, done: asyncio.Future[None]) -> None:
        self._sink = sink
        self._done = done

    def data_received(self, data: bytes) -> None:
        self._sink.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


class LocalProcess:
    """A running child process that leads its own process group.

    Create one with :meth:`start`; then await :meth:`wait` for its exit status and
    :meth:`drain` for the rest of its output, or :meth:`stop` it. Always call
    :meth:`close` at the end.
    """

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid
        self._loop = asyncio.get_running_loop()
        self._exit: asyncio.Future[ExitStatus] = self._loop.create_future()
        self._readers: list[asyncio.Future[None]] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._pidfd: int | None = None
        self._poll_handle: asyncio.TimerHandle | None = None

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None,
        stdin: bytes | None,
        stdout: OutputSink,
        stderr: OutputSink,
    ) -> LocalProcess:
        """Start ``argv`` in a new session with stdin from ``stdin`` or /dev/null.

        Args:
            argv: the program and its arguments (never secret values).
            env: the whole environment of the child.
            cwd: its working directory, None for ours.
            stdin: bytes fed to its stdin, then end of file; None for /dev/null.
            stdout: where its stdout bytes go.
            stderr: where its stderr bytes go.

        Returns:
            The running process.

        Raises:
            OSError: the program could not be started (missing, not executable, bad
                working directory).
        """
        # Forking is quick; asyncio's own subprocess support forks in the loop too.
        popen = subprocess.Popen(  # noqa: ASYNC220
            list(argv),
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
        self = cls(popen)
        self._watch_exit()
        try:
            await self._connect(stdout, stderr, stdin)
        except BaseException:
            # The exit watcher stays on and reaps the killed child.
            self._force_kill()
            self.close()
            raise
        return self

    async def _connect(
        self, stdout: OutputSink, stderr: OutputSink, stdin: bytes | None
    ) -> None:
        loop = self._loop
        for pipe, sink in ((self._popen.stdout, stdout), (self._popen.stderr, stderr)):
            done: asyncio.Future[None] = loop.create_future()
            self._readers.append(done)
            protocol = functools.partial(_Reader, sink, done)
            transport, _ = await loop.connect_read_pipe(protocol, pipe)
            self._transports.append(transport)
        if stdin is not None and self._popen.stdin is not None:
            writer, _ = await loop.connect_write_pipe(
                asyncio.Protocol, self._popen.stdin
            )
            self._transports.append(writer)
            writer.write(stdin)
            # Closing after a write flushes first, then sends end of file.
            writer.close()

    # ------------------------------------------------------------------ exit

    def _watch_exit(self) -> None:
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._poll_handle = self._loop.call_later(_POLL, self._poll)
            return
        self._loop.add_reader(self._pidfd, self._reap)

    def _poll(self) -> None:
        if not self._reap():
            self._poll_handle = self._loop.call_later(_POLL, self._poll)

    def _reap(self) -> bool:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return False
        self._unwatch()
        # Tell Popen the child is reaped, or it warns that it is still running.
        self._popen.returncode = os.waitstatus_to_exitcode(status)
        if not self._exit.done():
            self._exit.set_result(ExitStatus.from_wait_status(status))
        return True

    def _unwatch(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None

    async def wait(self) -> ExitStatus:
        """Wait for the process to exit; cancelling this wait leaves it running."""
        return await asyncio.shield(self._exit)

    @property
    def exited(self) -> bool:
        """Whether the process has exited and been reaped."""
        return self._exit.done()

    async def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for stdout and stderr to reach end of file.

        A background child that inherited them can hold them open for ever, so the
        wait is bounded; the pipes are closed after it either way.

        Returns:
            True when both streams ended on their own.
        """
        pending = [f for f in self._readers if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=seconds)
        ended = all(f.done() for f in self._readers)
        self._close_transports()
        return ended

    # ------------------------------------------------------------------ stop

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the whole process group; False when the group is gone."""
        return signal_group(self.pgid, sig)

    def group_alive(self) -> bool:
        """Whether any process of the group still runs (zombies excluded)."""
        if not self.exited:
            return True
        return group_members_alive(self.pgid)

    async def _until_gone(self, seconds: float) -> bool:
        deadline = self._loop.time() + seconds
        while self.group_alive():
            if self._loop.time() >= deadline:
                return False
            await asyncio.sleep(_POLL)
        return True

    async def stop(self, grace: float) -> bool:
        """Stop the whole group: SIGTERM, then SIGKILL after ``grace`` seconds.

        SIGKILL is sent even if this coroutine is itself cancelled during the grace.

        Returns:
            True when no process of the group is left running.
        """
        gone = False
        try:
            if self.signal_group(signal.SIGTERM):
                gone = await self._until_gone(grace)
        finally:
            if not gone:
                self._force_kill()
        return await self._until_gone(2.0)

    def _force_kill(self) -> None:
        self.signal_group(signal.SIGKILL)

    # ----------------------------------------------------------------- close

    def _close_transports(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()

    def close(self) -> None:
        """Release pipes and watchers; a process still running is left alone."""
        self._close_transports()
        if self.exited:
            return
        with contextlib.suppress(ChildProcessError):
            self._reap()
        if not self.exited:
            # The exit watcher stays on and reaps it when it ends.
            logger.debug("left process %d running", self.pid)


def child_env(extra: Mapping[str, str], *layers: Mapping[str, Any]) -> dict[str, str]:
    """This process's environment without its secrets, plus ``extra`` and ``layers``.

    ``HALOTERM_SECRET_*`` variables are haloterm's secret store; a child gets only
    the secrets its step references, passed in a layer, and only the values its
    own command refers to (``HALOTERM_VALUE_*``).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HALOTERM_SECRET_", "HALOTERM_VALUE_"))
    }
    env.update(extra)
    for layer in layers:
        env.update({k: str(v) for k, v in layer.items()})
    return env
