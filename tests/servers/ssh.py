"""Real SSH servers on 127.0.0.1 for tests.

* :class:`SshTestServer`: an asyncssh server in this process. It runs each session's
  command as a real local ``bash -c`` process in its own session (like sshd), streams
  its stdout/stderr as bytes, sends the exit status or exit signal (with the real
  core-dump flag), forwards ``signal`` requests, and closes the process's stdin at the
  client's EOF. It can misbehave: close without an exit status, ignore signals.
* :class:`StallProxy`: a TCP forwarder that can stop passing bytes at any moment, as a
  dropped route or a dead peer would (nothing answers keepalives any more).
* :class:`OpenSshServer`: a private OpenSSH ``sshd`` on its own config, host key and
  authorized_keys in a temporary directory, run as the current user.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import getpass
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
from asyncssh.packet import Boolean, String, UInt32

SSHD = Path("/usr/sbin/sshd")


def hashed_pattern(pattern: str) -> str:
    """A known_hosts host field hashed the way ``ssh-keygen -H`` writes it."""
    salt = os.urandom(20)
    digest = hmac.new(salt, pattern.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def known_hosts_line(
    host: str, port: int, key: asyncssh.SSHKey, *, hashed: bool = False
) -> str:
    """One known_hosts line for ``key`` at ``host``/``port``."""
    pattern = host if port == 22 else f"[{host}]:{port}"
    if hashed:
        pattern = hashed_pattern(pattern)
    public = key.export_public_key("openssh").decode().split()[:2]
    return f"{pattern} {' '.join(public)}\n"


@dataclass
class ClientIdentity:
    """A fake home with ``~/.ssh/id_ed25519``, as an operator's machine has."""

    home: Path
    key: asyncssh.SSHKey
    user: str

    @property
    def ssh_dir(self) -> Path:
        return self.home / ".ssh"

    @classmethod
    def create(cls, home: Path) -> ClientIdentity:
        key = asyncssh.generate_private_key("ssh-ed25519")
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key.write_private_key(ssh_dir / "id_ed25519")
        (ssh_dir / "id_ed25519").chmod(0o600)
        key.write_public_key(ssh_dir / "id_ed25519.pub")
        return cls(home=home, key=key, user=getpass.getuser())

    def trust(self, line: str) -> None:
        """Append a line to ``~/.ssh/known_hosts``."""
        with (self.ssh_dir / "known_hosts").open("a", encoding="ascii") as fh:
            fh.write(line)


class _PipeReader(asyncio.Protocol):
    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], stderr: bool) -> None:
        self.chan = chan
        self.stderr = stderr
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            if self.stderr:
                self.chan.write_stderr(data)
            else:
                self.chan.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _ExecSession(asyncssh.SSHServerSession[bytes]):
    def __init__(self, server: SshTestServer) -> None:
        self.server = server
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.command = ""
        self.pid: int | None = None
        self.stdin: asyncio.WriteTransport | None = None
        self.pending: list[bytes] = []
        self.eof = False

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def pty_requested(self, *args: object) -> bool:
        return False

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        self.command = command
        self.server.commands.append(command)
        return True

    def session_started(self) -> None:
        task = asyncio.get_running_loop().create_task(self._run())
        self.server.tasks.add(task)
        task.add_done_callback(self.server.task_done)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.stdin is None:
            self.pending.append(data)
        elif not self.stdin.is_closing():
            self.stdin.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.stdin is not None:
            self.stdin.close()
        return True

    def signal_received(self, signal_name: str) -> None:
        self.server.signals.append(signal_name)
        if self.server.refuse_signals or self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, AttributeError):
            os.kill(self.pid, getattr(signal, f"SIG{signal_name}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stdin is not None:
            self.stdin.close()

    async def _run(self) -> None:
        assert self.chan is not None
        chan = self.chan
        loop = asyncio.get_running_loop()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.server.workdir),
            "SHELL": "/bin/bash",
            "USER": self.server.user,
            "LANG": "C.UTF-8",
        }
        script = 'cd "$HOME" || exit 1; exec /bin/bash -c "$0"'
        pid = os.posix_spawn(  # noqa: ASYNC221 (spawning does not block)
            "/bin/bash",
            ["bash", "-c", script, self.command],
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, in_r, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
            setsid=self.server.new_session,
        )
        self.pid = pid
        self.server.pids.add(pid)
        for fd in (in_r, out_w, err_w):
            os.close(fd)

        stdin, _ = await loop.connect_write_pipe(
            asyncio.BaseProtocol, os.fdopen(in_w, "wb", 0)
        )
        self.stdin = stdin
        for chunk in self.pending:
            stdin.write(chunk)
        if self.eof:
            stdin.close()
        readers: list[_PipeReader] = []
        transports: list[asyncio.ReadTransport] = []
        for fd, is_err in ((out_r, False), (err_r, True)):
            reader = _PipeReader(chan, is_err)
            transport, _ = await loop.connect_read_pipe(
                functools.partial(_same, reader), os.fdopen(fd, "rb", 0)
            )
            readers.append(reader)
            transports.append(transport)

        try:
            status = await _wait_pid(pid)
            drained = asyncio.gather(*(r.done for r in readers))
            # Let output written just before the exit go first, as sshd usually does.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(drained), 0.2)
            self._send_exit(chan, status)
            await drained
            with contextlib.suppress(OSError, asyncssh.Error):
                chan.write_eof()
            chan.close()
        finally:
            for transport in transports:
                transport.close()
            stdin.close()

    def _send_exit(self, chan: asyncssh.SSHServerChannel[bytes], status: int) -> None:
        if self.server.no_exit_status or chan.is_closing():
            return
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name.removeprefix("SIG")
            core = os.WCOREDUMP(status)
            self.server.exits.append(f"signal {name}{' core' if core else ''}")
            request = String(name) + Boolean(core) + String("") + String("")
            chan._send_request(b"exit-signal", request)
        else:
            code = os.waitstatus_to_exitcode(status)
            self.server.exits.append(f"exit {code}")
            chan._send_request(b"exit-status", UInt32(code & 0xFF))


async def _wait_pid(pid: int) -> int:
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(pid)
    exited: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, ready)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    # The pidfd said it exited: this reaps at once.
    _, status = os.waitpid(pid, 0)  # noqa: ASYNC222
    return status


def _same(reader: _PipeReader) -> _PipeReader:
    return reader


class _Server(asyncssh.SSHServer):
    def __init__(self, owner: SshTestServer) -> None:
        self.owner = owner

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.owner.connections += 1

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        wanted = self.owner.client_key.export_public_key("openssh").split()[:2]
        offered = key.export_public_key("openssh").split()[:2]
        return username == self.owner.user and offered == wanted

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        return _ExecSession(self.owner)


@dataclass
class SshTestServer:
    """An asyncssh server on 127.0.0.1 that runs commands as local processes.

    Attributes:
        commands: every exec command line received, in order.
        signals: every signal request received.
        exits: what was reported per finished command (``exit 0``, ``signal TERM``).
        connections: how many SSH connections were accepted.
        refuse_signals: ignore ``signal`` requests (like OpenSSH before 7.9).
        no_exit_status: close channels without an exit status.
        new_session: start each command in a session of its own, as sshd does;
            False leaves it in this process's group (no group to signal).
    """

    client_key: asyncssh.SSHKey
    workdir: Path
    user: str = field(default_factory=getpass.getuser)
    host_key: asyncssh.SSHKey = field(
        default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519")
    )
    host: str = "127.0.0.1"
    port: int = 0
    refuse_signals: bool = False
    no_exit_status: bool = False
    new_session: bool = True
    commands: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    connections: int = 0
    errors: list[BaseException | None] = field(default_factory=list)
    """Exceptions raised while serving a session (a test server bug if any)."""
    pids: set[int] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _acceptor: asyncssh.SSHAcceptor | None = None

    async def start(self) -> SshTestServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._acceptor = await asyncssh.create_server(
            lambda: _Server(self),
            self.host,
            self.port,
            server_host_keys=[self.host_key],
            encoding=None,
            keepalive_interval=0,
        )
        self.port = self._acceptor.sockets[0].getsockname()[1]
        return self

    def known_hosts_line(self, *, hashed: bool = False) -> str:
        return known_hosts_line(self.host, self.port, self.host_key, hashed=hashed)

    def task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())

    def kill_all(self) -> None:
        """SIGKILL every process group this server started."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if self.new_session:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)

    async def close(self) -> None:
        self.kill_all()
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=5)
        for task in self.tasks:
            task.cancel()


class StallProxy:
    """A TCP forwarder to ``target`` that can go silent, like a dropped route."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> StallProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stall(self) -> None:
        """Stop passing bytes either way; connections stay open."""
        self._flowing.clear()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class OpenSshServer:
    """A private OpenSSH sshd on 127.0.0.1, configured entirely under ``root``."""

    def __init__(self, root: Path, authorized: asyncssh.SSHKey) -> None:
        self.root = root
        self.authorized = authorized
        self.host = "127.0.0.1"
        self.port = 0
        self.host_key: asyncssh.SSHKey | None = None
        self.log = root / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return SSHD.exists() and shutil.which("ssh-keygen") is not None

    def start(self) -> OpenSshServer:
        self.root.mkdir(parents=True, exist_ok=True)
        key_file = self.root / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)],
            check=True,
        )
        self.host_key = asyncssh.read_public_key(f"{key_file}.pub")
        (self.root / "authorized_keys").write_bytes(
            self.authorized.export_public_key("openssh")
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for _ in range(5):
            self.port = _free_port()
            if self._try_start(key_file):
                return self
        raise RuntimeError(f"sshd did not start: {self.log.read_text()}")

    def _try_start(self, key_file: Path) -> bool:
        config = self.root / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.host}\n"
            f"HostKey {key_file}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            f"PidFile {self.root / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nMaxStartups 200\nMaxSessions 50\n"
            "LogLevel VERBOSE\n"
        )
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def known_hosts_line(self, *, hashed: bool = False) -> str:
        assert self.host_key is not None
        return known_hosts_line(self.host, self.port, self.host_key, hashed=hashed)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
