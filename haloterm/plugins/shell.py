"""The ``shell`` action: run a command line on the console's machine.

The command runs as ``<shell> -c <command>`` in its own process group, with stdin
from /dev/null (or the step's ``stdin`` text), no terminal, and pagers disabled, so
prompts, ``sudo`` and pagers end at once instead of waiting for ever. Secrets reach
the process only through its environment. On timeout or cancel the whole group gets
SIGTERM, then SIGKILL after ``kill_grace``.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import Field, StrictInt, StrictStr

from haloterm.models import Duration
from haloterm.plugins.base import (
    Action,
    ActionContext,
    ActionError,
    ActionInputs,
    StepResult,
)
from haloterm.plugins.process import ExitStatus, LocalProcess, child_env

DRAIN_TIMEOUT = 1.0
"""Seconds to keep reading after the command exits, for output still in the pipes.

A background child that inherited stdout or stderr holds them open; the step ends
this long after the command's own exit regardless.
"""

NO_PROMPTS = {"PAGER": "cat", "GIT_PAGER": "cat", "TERM": "dumb", "SYSTEMD_PAGER": ""}
"""Environment that keeps tools from paging or drawing for a terminal."""


class ShellInputs(ActionInputs):
    """The ``with`` block of a ``shell`` step."""

    command: StrictStr
    """The command line, run by `shell -c`."""
    shell: StrictStr = "/bin/bash"
    """The shell that runs the command."""
    env: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    """Extra environment variables; the place for secrets (never the command line)."""
    cwd: StrictStr | None = None
    """Working directory; default: the console's."""
    stdin: StrictStr | None = None
    """Text fed to the command's stdin; without it stdin is /dev/null."""
    kill_grace: Duration = 5.0
    """Time between SIGTERM and SIGKILL when the step is stopped."""
    success_codes: list[StrictInt] = Field(default_factory=lambda: [0])
    """Exit codes that count as success."""


class ShellAction(Action):
    """Runs a command line locally and passes or fails on its exit status."""

    name: ClassVar[str] = "shell"
    Inputs: ClassVar[type[ActionInputs]] = ShellInputs
    command_fields: ClassVar[frozenset[str]] = frozenset({"command"})
    description: ClassVar[str] = "Run a command on this machine"

    async def run(self, inputs: ShellInputs, ctx: ActionContext) -> StepResult:
        """Run the command and wait for it, its output streamed to the step's log.

        Args:
            inputs: the rendered ``with`` block.
            ctx: the engine's services for this attempt.

        Returns:
            Passed when the exit code is in ``success_codes``; failed with reason
            ``exit N`` or ``signal NAME`` (``signal SIGSEGV (core)`` when a core
            was dumped) otherwise. ``exit_code`` is None when a signal ended it.

        Raises:
            ActionError: the shell could not be started.
            asyncio.CancelledError: after the process group was stopped.
        """
        stdout, stderr = ctx.output("stdout"), ctx.output("stderr")
        try:
            proc = await LocalProcess.start(
                [inputs.shell, "-c", inputs.command],
                env=child_env(
                    NO_PROMPTS, inputs.env, {**ctx.command_env, **ctx.secret_env}
                ),
                cwd=inputs.cwd,
                stdin=None if inputs.stdin is None else inputs.stdin.encode(),
                stdout=stdout,
                stderr=stderr,
            )
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise ActionError(
                f"cannot start {inputs.shell}: {exc.strerror or exc}{where}"
            ) from None
        ctx.track_process(proc.pid, proc.pgid)
        try:
            status = await proc.wait()
            await proc.drain(DRAIN_TIMEOUT)
        except asyncio.CancelledError:
            await self._stop(proc, inputs.kill_grace, ctx)
            raise
        finally:
            ctx.untrack_process(proc.pid)
            proc.close()
            stdout.close()
            stderr.close()
        return self.result(status, inputs.success_codes)

    @staticmethod
    async def _stop(proc: LocalProcess, grace: float, ctx: ActionContext) -> None:
        ctx.log.info("stopping process group %d", proc.pgid)
        if not await proc.stop(grace):
            ctx.cancel_note = "process may still be running"
            ctx.log.warning("process group %d did not end after SIGKILL", proc.pgid)

    @staticmethod
    def result(status: ExitStatus, success_codes: list[int]) -> StepResult:
        """Turn an exit status into a step outcome."""
        outputs = {"exit_code": status.exit_code}
        if status.signal is None and status.exit_code in success_codes:
            return StepResult(True, exit_code=status.exit_code, outputs=outputs)
        return StepResult(
            False,
            reason=status.reason,
            exit_code=status.exit_code,
            signal=status.signal,
            outputs=outputs,
        )
