"""SSH fan-out: ``true`` on N hosts, haloterm's ``ssh`` action against bare asyncssh.

A loopback asyncssh server runs in another process and executes each command as a
real ``/bin/sh -c`` process. Every "host" is a distinct user on that server, so each
side opens one connection per host, as it would against N machines. Both sides run
at the same concurrency. ``ansible -m command -a true -f <concurrency>`` runs on the
same hosts when ``--ansible-env DIR`` gives it a virtualenv (or one is on PATH).

Usage: ``python bench/ssh_fanout.py [--hosts 1000] [--concurrency 100]
[--ansible-env ~/.cache/haloterm-bench/ansible]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh

from haloterm.config import InventoryHost, Settings
from haloterm.models import StepStatus
from haloterm.plugins.base import (
    ActionContext,
    ActionError,
    ApprovalOutcome,
    ApprovalRequest,
    ChildResult,
    OutputSink,
)

# --------------------------------------------------------------------- server side


class _Session(asyncssh.SSHServerSession[bytes]):
    """Runs the exec request as ``/bin/sh -c``, its stdin fed from the channel
    (ansible pipes its modules in), stdout and stderr sent back at the end."""

    def __init__(self) -> None:
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.command = ""
        self.stdin: asyncio.Queue[bytes | None] = asyncio.Queue()

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def exec_requested(self, command: str) -> bool:
        self.command = command
        return True

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.stdin.put_nowait(data)

    def eof_received(self) -> bool:
        self.stdin.put_nowait(None)
        return True

    def session_started(self) -> None:
        asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self.chan is not None
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "SHELL": "/bin/sh"},
        )
        feeding = asyncio.get_running_loop().create_task(self._feed(proc))
        assert proc.stdout is not None and proc.stderr is not None
        out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
        await proc.wait()
        feeding.cancel()
        if out:
            self.chan.write(out)
        if err:
            self.chan.write_stderr(err)
        self.chan.exit(proc.returncode or 0)

    async def _feed(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        while (data := await self.stdin.get()) is not None:
            proc.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await proc.stdin.drain()
        proc.stdin.close()


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return True

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        return _Session()


async def serve(host_key: str) -> None:
    acceptor = await asyncssh.create_server(
        _Server,
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        encoding=None,
        keepalive_interval=0,
    )
    port = acceptor.sockets[0].getsockname()[1]
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --------------------------------------------------------------------- client side


class _Null:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class BenchContext(ActionContext):
    """Just enough context for the action: output dropped, statuses counted."""

    def __init__(self, settings: Settings) -> None:
        import logging

        self.execution_id = 1
        self.step_id = "bench"
        self.runbook = "bench"
        self.operator = "bench"
        self.attempt = 1
        self.deadline = None
        self.log = logging.LoggerAdapter(logging.getLogger("bench"), {})
        self.secret_env: Mapping[str, str] = {}
        self.config = settings
        self.finished = 0

    def output(self, stream: str = "stdout", host: str = "") -> OutputSink:
        return _Null()

    def info(self, text: str, host: str = "") -> None:
        pass

    def mask(self, text: str) -> str:
        return text

    async def set_host_status(
        self,
        host: str,
        status: StepStatus,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
        signal: str | None = None,
    ) -> None:
        if status.finished:
            self.finished += 1

    async def run_child(self, runbook: str, params: dict[str, Any]) -> ChildResult:
        raise ActionError("not here")

    async def wait_for_approval(self, request: ApprovalRequest) -> ApprovalOutcome:
        raise ActionError("not here")

    async def update_ticket(self, **kw: Any) -> int:
        raise ActionError("not here")

    async def create_ticket(self, **values: Any) -> int:
        raise ActionError("not here")

    def notify_consoles(self, text: str, severity: str = "information") -> None:
        pass

    def secret(self, name: str) -> str:
        raise ActionError("not here")

    def now(self) -> datetime:
        return datetime.now(UTC)


async def run_haloterm(users: list[str], port: int, concurrency: int) -> float:
    from haloterm.plugins.ssh import SshAction, SshInputs, close_pool

    inventory = {
        u: InventoryHost(address="127.0.0.1", port=port, user=u, tags=["bench"])
        for u in users
    }
    ctx = BenchContext(Settings(inventory=inventory))
    inputs = SshInputs(hosts=["tag:bench"], command="true", concurrency=concurrency)
    started = time.perf_counter()
    result = await SshAction().run(inputs, ctx)
    await close_pool(ctx.execution_id)
    elapsed = time.perf_counter() - started
    if not result.passed:
        raise SystemExit(f"haloterm run failed: {result.reason}")
    return elapsed


async def run_bare(users: list[str], port: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(user: str) -> int | None:
        async with gate, asyncssh.connect("127.0.0.1", port, username=user) as conn:
            done = await conn.run("true", encoding=None, stdin=asyncssh.DEVNULL)
            return done.exit_status

    started = time.perf_counter()
    statuses = await asyncio.gather(*(one(u) for u in users))
    elapsed = time.perf_counter() - started
    if any(s != 0 for s in statuses):
        raise SystemExit("bare asyncssh run failed")
    return elapsed


def ansible_in(env: Path) -> Path:
    """An ``ansible`` executable in a virtualenv of its own (created, with
    ansible-core installed, on first use), so the bench's env stays as it is."""
    ansible = env / "bin" / "ansible"
    if not ansible.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run(
            [str(env / "bin" / "pip"), "install", "-q", "ansible-core"], check=True
        )
    return ansible


def run_ansible(
    ansible: Path, users: list[str], port: int, home: Path, forks: int
) -> float:
    """``ansible -m command -a true`` on every host; modules go over stdin
    (pipelining), as the loopback server keeps no files between sessions."""
    inventory = home / "inventory.ini"
    inventory.write_text(
        "[bench]\n"
        + "".join(
            f"{u} ansible_host=127.0.0.1 ansible_port={port} ansible_user={u}\n"
            for u in users
        )
    )
    # OpenSSH reads ~ from the password database, not $HOME: name the files.
    ssh_dir = home / ".ssh"
    ssh_args = (
        f"-o UserKnownHostsFile={ssh_dir / 'known_hosts'}"
        f" -o IdentityFile={ssh_dir / 'id_ed25519'} -o IdentitiesOnly=yes"
        " -o ControlMaster=auto -o ControlPersist=60s"
    )
    env = {
        **os.environ,
        "ANSIBLE_SSH_ARGS": ssh_args,
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_LOCAL_TEMP": str(home / "ansible-tmp"),
    }
    started = time.perf_counter()
    subprocess.run(
        [str(ansible), "bench", "-i", str(inventory)]
        + ["-m", "command", "-a", "true", "-f", str(forks)],
        check=True,
        stdout=None if os.environ.get("BENCH_DEBUG") else subprocess.DEVNULL,
        env=env,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--ansible-env",
        type=Path,
        metavar="DIR",
        help="also run ansible from a virtualenv at DIR (created with ansible-core "
        "installed when missing); without it, an ansible on PATH is used if any",
    )
    parser.add_argument("--serve", metavar="HOST_KEY", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return

    home = Path(tempfile.mkdtemp(prefix="haloterm-bench-"))
    os.environ["HOME"] = str(home)
    os.environ.pop("SSH_AUTH_SOCK", None)
    os.environ["XDG_DATA_HOME"] = str(home / "data")
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(home / "host_key")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(ssh_dir / "id_ed25519")
    (ssh_dir / "id_ed25519").chmod(0o600)

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(home / "host_key")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        public = host_key.export_public_key("openssh").decode().split()[:2]
        (ssh_dir / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(public)}\n")
        users = [f"host{i:05d}" for i in range(args.hosts)]

        # Alternate the two, twice, and keep each one's best: warm-up and server
        # state then favour neither.
        bare_runs, halo_runs = [], []
        for _ in range(2):
            halo_runs.append(asyncio.run(run_haloterm(users, port, args.concurrency)))
            bare_runs.append(asyncio.run(run_bare(users, port, args.concurrency)))
        bare, halo = min(bare_runs), min(halo_runs)
        found = shutil.which("ansible")
        executable = ansible_in(args.ansible_env) if args.ansible_env else found
        ansible = (
            run_ansible(Path(executable), users, port, home, args.concurrency)
            if executable
            else None
        )
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(10)
        shutil.rmtree(home, ignore_errors=True)

    n, c = args.hosts, args.concurrency
    print(
        f"ssh fan-out: `true` on {n} hosts, concurrency {c}, server in another process"
    )
    print(f"  bare asyncssh      {bare:8.2f} s   {n / bare:8.0f} hosts/s   1.00x")
    ratio = halo / bare
    print(
        f"  haloterm ssh step  {halo:8.2f} s   {n / halo:8.0f} hosts/s   {ratio:.2f}x"
    )
    if ansible is None:
        print("  ansible            skipped: no ansible (try --ansible-env DIR)")
    else:
        ratio = ansible / bare
        rate = n / ansible
        row = f"{ansible:8.2f} s   {rate:8.0f} hosts/s   {ratio:.2f}x"
        print(f"  ansible -f {c:<7} {row}")


if __name__ == "__main__":
    main()
