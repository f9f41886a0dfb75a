"""The shell action: exit statuses, signals, stdin, stops, output and secrets
(CASES C01, C02, C04, C05, C06, C07, C27)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from haloterm.engine.output import sanitize_for_display
from haloterm.masking import MASK
from haloterm.plugins.base import ActionError, StepResult
from haloterm.plugins.shell import ShellAction, ShellInputs
from tests.actions.context import LocalContext

ROOT = Path(__file__).resolve().parents[2]


async def run(
    ctx: LocalContext, command: str, **inputs: Any
) -> tuple[StepResult, LocalContext]:
    result = await ShellAction().run(ShellInputs(command=command, **inputs), ctx)
    ctx.finish()
    return result, ctx


@pytest.fixture
def ctx(tmp_path: Path) -> LocalContext:
    return LocalContext(tmp_path)


def _sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[:2] == ["sleep", marker] and proc.info["status"] != "zombie":
            found.append(proc)
    return found


@pytest.fixture
def sleep_marker() -> Iterator[str]:
    """A unique ``sleep`` argument; whatever still sleeps on it is killed afterwards."""
    marker = f"{600 + os.getpid() % 1000}.{time.monotonic_ns() % 1000:03d}"
    yield marker
    for proc in _sleepers(marker):
        proc.kill()


async def test_passes_with_output_and_exit_code(ctx: LocalContext) -> None:
    result, _ = await run(ctx, "echo hello; echo oops >&2")
    assert result.passed and result.exit_code == 0
    assert result.outputs == {"exit_code": 0}
    assert ctx.lines("stdout") == ["hello"]
    assert ctx.lines("stderr") == ["oops"]
    assert ctx.summaries[""].output == "hello"


async def test_env_cwd_and_no_terminal(ctx: LocalContext, tmp_path: Path) -> None:
    """C05 step 3: no tty, pagers are cat, TERM is dumb."""
    command = (
        'echo "$GREETING $PAGER $GIT_PAGER $TERM [$SYSTEMD_PAGER]"; pwd; '
        "[ -t 0 ] || echo no-tty-in; [ -t 1 ] || echo no-tty-out; "
        "printf 'a\\nb\\n' | $PAGER"
    )
    result, _ = await run(ctx, command, env={"GREETING": "hi"}, cwd=str(tmp_path))
    assert result.passed
    assert ctx.lines() == [
        "hi cat cat dumb []",
        str(tmp_path),
        "no-tty-in",
        "no-tty-out",
        "a",
        "b",
    ]


async def test_inherited_haloterm_secrets_are_not_passed_on(
    ctx: LocalContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HALOTERM_SECRET_OTHER", "unrelated-value")
    result, _ = await run(ctx, 'echo "[${HALOTERM_SECRET_OTHER-unset}]"')
    assert result.passed and ctx.lines() == ["[unset]"]


# ----------------------------------------------------------------- C07 statuses


@pytest.mark.parametrize(
    ("command", "reason", "exit_code", "sig"),
    [
        ("exit 3", "exit 3", 3, None),
        ("kill -TERM $$", "signal SIGTERM", None, "SIGTERM"),
        ("ulimit -c 0; kill -SEGV $$", "signal SIGSEGV", None, "SIGSEGV"),
        ("bash -c 'exit 300'", "exit 44", 44, None),
    ],
)
async def test_exit_codes_and_signals_told_apart(
    ctx: LocalContext, command: str, reason: str, exit_code: int | None, sig: str | None
) -> None:
    result, _ = await run(ctx, command)
    assert not result.passed
    assert (result.reason, result.exit_code, result.signal) == (reason, exit_code, sig)
    assert result.outputs == {"exit_code": exit_code}


def _dumps_core(command: str, cwd: Path) -> bool:
    """Whether this machine writes a core for ``command`` (asked of the kernel)."""
    probe = subprocess.Popen(["/bin/bash", "-c", command], cwd=cwd)
    _, status = os.waitpid(probe.pid, 0)
    probe.returncode = os.waitstatus_to_exitcode(status)
    return os.WCOREDUMP(status)


async def test_core_dump_is_reported(ctx: LocalContext, tmp_path: Path) -> None:
    """C07: ``signal SIGSEGV (core)`` exactly when the kernel wrote a core."""
    command = "ulimit -c unlimited 2>/dev/null; kill -SEGV $$"
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    dumps_core = _dumps_core(command, probe_dir)

    result, _ = await run(ctx, command, cwd=str(tmp_path))
    expected = "signal SIGSEGV (core)" if dumps_core else "signal SIGSEGV"
    assert (result.reason, result.signal, result.exit_code) == (
        expected,
        "SIGSEGV",
        None,
    )


async def test_success_codes(ctx: LocalContext) -> None:
    result, _ = await run(ctx, "exit 3", success_codes=[0, 3])
    assert result.passed and result.exit_code == 3


async def test_shell_that_cannot_start(ctx: LocalContext, tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="cannot start /nonexistent/sh"):
        await run(ctx, "true", shell="/nonexistent/sh")
    with pytest.raises(ActionError, match="No such file or directory"):
        await run(ctx, "true", cwd=str(tmp_path / "missing"))


def test_inputs_are_strict() -> None:
    with pytest.raises(ValidationError):
        ShellInputs.model_validate({"command": "true", "colour": "red"})
    with pytest.raises(ValidationError, match="duration"):
        ShellInputs.model_validate({"command": "true", "kill_grace": 90})
    assert (
        ShellInputs.model_validate({"command": "x", "kill_grace": "2s"}).kill_grace == 2
    )
    assert ShellAction.command_fields == {"command"}


# ----------------------------------------------------------------- C05 stdin


async def test_prompt_reads_end_of_file_at_once(
    ctx: LocalContext, tmp_path: Path
) -> None:
    """C05 step 1: stdin is /dev/null, so a prompt gets nothing and moves on."""
    started = time.monotonic()
    result, _ = await run(
        ctx, "read -r -p 'Proceed? [y/N] ' ans && echo \"got=$ans\" || exit 1"
    )
    assert time.monotonic() - started < 5
    assert not result.passed and result.reason == "exit 1"
    again = LocalContext(tmp_path)
    result, _ = await run(again, 'read -r ans; echo "got=$ans"')
    assert result.passed and again.lines() == ["got="]


async def test_stdin_text_is_fed(ctx: LocalContext) -> None:
    result, _ = await run(ctx, 'read -r ans; echo "got=$ans"; cat', stdin="yes\nmore\n")
    assert result.passed and ctx.lines() == ["got=yes", "more"]


async def test_stdin_not_read_does_not_break_the_step(ctx: LocalContext) -> None:
    result, _ = await run(ctx, "echo ignored stdin", stdin="x" * 1_000_000)
    assert result.passed and ctx.lines() == ["ignored stdin"]


async def test_sudo_wanting_a_password_fails_fast(
    ctx: LocalContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C05 step 2: a sudo that reads a password from stdin gets end of file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sudo = bin_dir / "sudo"
    sudo.write_text(
        "#!/bin/bash\n"
        "printf '[sudo] password for %s: ' \"$USER\" >&2\n"
        "if ! IFS= read -r password; then\n"
        "  echo 'sudo: a password is required' >&2; exit 1\n"
        "fi\n"
        'exec "$@"\n'
    )
    sudo.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    started = time.monotonic()
    result, _ = await run(ctx, "sudo -k; sudo systemctl restart nginx")
    assert time.monotonic() - started < 5
    assert not result.passed and result.reason == "exit 1"
    assert ctx.lines("stderr")[-1].endswith("sudo: a password is required")


async def test_background_child_holding_output_does_not_hold_the_step(
    ctx: LocalContext, sleep_marker: str
) -> None:
    """C05 step 4: the step ends ~1 s after the command, though a child keeps stdout."""
    started = time.monotonic()
    result, _ = await run(ctx, f"nohup sleep {sleep_marker} 2>/dev/null & echo started")
    elapsed = time.monotonic() - started
    assert result.passed and ctx.lines() == ["started"]
    assert elapsed < 3.0
    assert _sleepers(sleep_marker), "the background child is left running"


# ----------------------------------------------------------------- C06 stop


async def test_timeout_kills_the_whole_process_group(
    ctx: LocalContext, sleep_marker: str
) -> None:
    """C06 local: no orphan survives a timeout."""
    command = f"bash -c 'sleep {sleep_marker} & sleep {sleep_marker} & wait'"
    action = ShellAction()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await action.run(ShellInputs(command=command, kill_grace="2s"), ctx)
    assert time.monotonic() - started < 3
    assert _sleepers(sleep_marker) == []
    assert ctx.cancel_note is None


async def test_term_ignored_then_killed_after_grace(
    ctx: LocalContext, sleep_marker: str
) -> None:
    command = f"trap '' TERM; sleep {sleep_marker} & sleep {sleep_marker}; echo never"
    task = asyncio.create_task(
        ShellAction().run(ShellInputs(command=command, kill_grace="300ms"), ctx)
    )
    while len(_sleepers(sleep_marker)) < 2:  # noqa: ASYNC110 (another process)
        await asyncio.sleep(0.02)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0.25 < time.monotonic() - started < 2.5
    assert _sleepers(sleep_marker) == []
    ctx.finish()
    assert "never" not in ctx.lines()


# ----------------------------------------------------------------- output


async def test_invalid_utf8_and_split_character_through_a_real_process(
    ctx: LocalContext,
) -> None:
    """C02: the split skull arrives whole, invalid bytes become U+FFFD."""
    command = (
        "printf 'caf\\xe9 latin1 \\xff\\xfe bytes\\n'; "
        "printf '\\xe2\\x98'; sleep 0.3; printf '\\xa0 skull\\n'; echo ok"
    )
    result, _ = await run(ctx, command)
    assert result.passed
    assert ctx.lines() == ["caf\ufffd latin1 \ufffd\ufffd bytes", "\u2620 skull", "ok"]


async def test_colours_kept_raw_in_store_and_sanitised_for_display(
    ctx: LocalContext,
) -> None:
    """C01 through a real process."""
    command = textwrap.dedent(
        r"""
        printf '\033[0;32mok=12\033[0m \033[1;31mfailed=1\033[0m\n'
        printf 'before\033[2K\033[1Aafter\n'
        printf '\033]0;owned-title\007title\n'
        printf '\033]52;c;ZWNobyBoaQ==\007clip\n'
        printf '\033[2J\033[Hclear\n'
        """
    )
    result, _ = await run(ctx, command)
    assert result.passed
    stored = ctx.lines()
    assert stored[3] == "\x1b]52;c;ZWNobyBoaQ==\x07clip"
    assert [sanitize_for_display(line) for line in stored] == [
        "\x1b[0;32mok=12\x1b[0m \x1b[1;31mfailed=1\x1b[0m",
        "beforeafter",
        "title",
        "clip",
        "clear",
    ]


async def test_secret_in_env_is_masked_in_every_form(tmp_path: Path) -> None:
    """C27: raw, base64 and URL-encoded forms are masked; argv never has the value."""
    secret = "S3cr3t!pw"
    ctx = LocalContext(tmp_path, secret_env={"HALOTERM_SECRET_DB_PASSWORD": secret})
    command = (
        'DB_PASSWORD="$HALOTERM_SECRET_DB_PASSWORD"; '
        'echo "pw=$DB_PASSWORD"; '
        'printf %s "$DB_PASSWORD" | base64; '
        f"{sys.executable} -c "
        '"import os, urllib.parse; '
        "print(urllib.parse.quote(os.environ['HALOTERM_SECRET_DB_PASSWORD']))\"; "
        'echo "$DB_PASSWORD" >&2; '
        "tr '\\0' ' ' < /proc/$$/cmdline | base64 -w0; echo"
    )
    result, _ = await run(ctx, command)
    assert result.passed
    out = ctx.lines()
    assert out[:3] == [f"pw={MASK}", MASK, MASK]
    assert ctx.lines("stderr") == [MASK]
    argv = base64.b64decode(out[3]).decode()
    assert "HALOTERM_SECRET_DB_PASSWORD" in argv and secret not in argv

    forms = [secret, base64.b64encode(secret.encode()).decode(), "S3cr3t%21pw"]
    spool = ctx.summaries[""].spool_path
    assert spool is not None
    everything = spool.read_text() + "\n".join(line.text for line in ctx.stored)
    for form in forms:
        assert form not in everything


# ----------------------------------------------------------------- C04 volume

_BIG_OUTPUT = """
import asyncio, json, sys, time
import psutil
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from haloterm.plugins.shell import ShellAction, ShellInputs
from tests.actions.context import LocalContext

COMMAND = (
    "yes 'log line with some padding 0123456789' | head -c 60000000; "
    "head -c 3000000 /dev/zero | tr '\\\\0' 'a'; echo"
)

peak = 0

async def sample(me):
    global peak
    while True:
        peak = max(peak, me.memory_info().rss)
        await asyncio.sleep(0.02)

async def main():
    me = psutil.Process()
    before = me.memory_info().rss
    sampler = asyncio.create_task(sample(me))
    ctx = LocalContext(Path(sys.argv[2]), live_keep=100)
    started = time.monotonic()
    result = await ShellAction().run(ShellInputs(command=COMMAND), ctx)
    summary = ctx.finish()[""]
    sampler.cancel()
    stored = ctx.lines("stdout")
    print(json.dumps({
        "passed": result.passed,
        "seconds": time.monotonic() - started,
        "rss_growth_mb": (max(peak, me.memory_info().rss) - before) / 2**20,
        "banner": summary.banner,
        "stored": len(stored),
        "first": stored[0],
        "last": stored[-1],
        "info": ctx.lines("info"),
        "live": ctx.live_count,
        "lines_total": summary.lines_total,
        "bytes_total": summary.bytes_total,
        "spool_size": summary.spool_path.stat().st_size,
        "output_chars": len(summary.output),
    }))

asyncio.run(main())
"""


def test_sixty_megabytes_and_a_three_megabyte_line(tmp_path: Path) -> None:
    """C04: bounded memory, a banner, the tail stored, the full output spooled."""
    done = subprocess.run(
        [sys.executable, "-c", _BIG_OUTPUT, str(ROOT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"]
    assert report["rss_growth_mb"] < 200
    assert report["bytes_total"] == 63_000_001
    assert report["info"] == ["output truncated: 63.0 MB, showing last 5,000 lines"]
    assert report["stored"] == 1000 + 5000
    assert report["first"] == "log line with some padding 0123456789"
    # head -c cut the last "yes" line short; the 3 MB of "a" continue it.
    last = "log line with " + "a" * 3_000_000
    assert report["last"] == last[:65536] + f" …[+{len(last) - 65536:,} chars]"
    assert report["lines_total"] == 60_000_000 // 38 + 1
    assert report["live"] == report["lines_total"] - 1000
    assert report["spool_size"] == 63_000_001
    assert report["output_chars"] == 64 * 1024
