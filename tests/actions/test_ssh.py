"""The ``ssh`` action against real SSH servers on 127.0.0.1 (asyncssh and OpenSSH)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from haloterm.config import InventoryHost, Settings
from haloterm.models import StepStatus
from haloterm.plugins.base import ActionError, StepResult
from haloterm.plugins.ssh import (
    CONNECTION_LOST,
    NO_EXIT_STATUS,
    SshAction,
    SshInputs,
    build_exec,
    close_pool,
    pooled_connections,
    signal_reason,
)
from haloterm.plugins.ssh_hosts import (
    HostKeyChanged,
    HostResolutionError,
    SshPaths,
    expand_hosts,
    trust_host,
)
from tests.actions.context import LocalContext
from tests.servers.ssh import (
    ClientIdentity,
    OpenSshServer,
    SshTestServer,
    StallProxy,
    known_hosts_line,
)

_IDS = itertools.count(1000)
Server = SshTestServer | OpenSshServer | StallProxy
MakeCtx = Callable[..., LocalContext]


@pytest.fixture
def identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClientIdentity:
    home = tmp_path / "operator"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return ClientIdentity.create(home)


@pytest.fixture
async def start_server(
    identity: ClientIdentity, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[SshTestServer]]]:
    servers: list[SshTestServer] = []

    async def start(*, trusted: bool = True, **options: Any) -> SshTestServer:
        workdir = tmp_path / f"remote-{len(servers)}"
        server = SshTestServer(client_key=identity.key, workdir=workdir, **options)
        servers.append(await server.start())
        if trusted:
            identity.trust(server.known_hosts_line())
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def server(
    start_server: Callable[..., Awaitable[SshTestServer]],
) -> SshTestServer:
    return await start_server()


@pytest.fixture
async def make_ctx(tmp_path: Path) -> AsyncIterator[MakeCtx]:
    made: list[LocalContext] = []

    def make(
        hosts: dict[str, Server],
        *,
        groups: dict[str, list[str]] | None = None,
        **kw: Any,
    ) -> LocalContext:
        out = tmp_path / f"out-{len(made)}"
        out.mkdir()
        ctx = LocalContext(out, **kw)
        ctx.execution_id = next(_IDS)
        inventory = {
            name: InventoryHost(address="127.0.0.1", port=srv.port, tags=[name[:3]])
            for name, srv in hosts.items()
        }
        ctx.config = Settings(inventory=inventory, groups=groups or {})
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        await close_pool(ctx.execution_id)


async def run_ssh(ctx: LocalContext, **with_: Any) -> StepResult:
    inputs = SshInputs.model_validate(with_)
    try:
        return await SshAction().run(inputs, ctx)
    finally:
        ctx.finish()


def final_statuses(ctx: LocalContext) -> dict[str, StepStatus]:
    return {s.host: s.status for s in ctx.host_statuses}


# --------------------------------------------------------------------- C02, basics


async def test_c02_invalid_and_split_utf8_pass_through_as_bytes(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx({"web-01": server})
    command = (
        r"printf 'caf\xe9 latin1 \xff\xfe bytes\n'; printf '\xe2\x98'; sleep 1;"
        r" printf '\xa0 skull\n'; echo ok"
    )
    result = await run_ssh(ctx, hosts=["web-01"], command=command)
    assert result.passed, result.reason
    assert result.exit_code == 0
    lines = ctx.lines("stdout", host="web-01")
    assert lines == ["caf\ufffd latin1 \ufffd\ufffd bytes", "\u2620 skull", "ok"]
    second = await run_ssh(ctx, hosts=["web-01"], command="echo again")
    assert second.passed
    assert server.connections == 1


async def test_stderr_and_host_statuses(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx({"web-01": server})
    result = await run_ssh(ctx, hosts=["web-01"], command="echo out; echo err >&2")
    assert result.passed
    assert ctx.lines("stdout", host="web-01") == ["out"]
    assert ctx.lines("stderr", host="web-01") == ["err"]
    assert [(s.host, s.status) for s in ctx.host_statuses] == [
        ("web-01", StepStatus.RUNNING),
        ("web-01", StepStatus.PASSED),
    ]
    assert result.outputs["hosts"]["web-01"]["status"] == "passed"


# --------------------------------------------------------------------- C05


async def test_c05_read_sees_eof_at_once(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx({"web-01": server})
    command = "read -r -p 'Proceed? [y/N] ' ans; rc=$?; echo \"got=$ans\"; exit $rc"
    started = time.monotonic()
    result = await run_ssh(ctx, hosts=["web-01"], command=command)
    assert time.monotonic() - started < 5
    assert not result.passed
    assert result.reason == "exit 1"
    assert ctx.lines("stdout", host="web-01") == ["got="]


async def test_c05_no_tty_so_password_prompts_fail_fast(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx({"web-01": server})
    command = "test -t 0 || test -t 1 && echo tty; cat /dev/tty"
    result = await run_ssh(ctx, hosts=["web-01"], command=command)
    assert not result.passed
    assert result.exit_code == 1
    assert "tty" not in ctx.lines("stdout", host="web-01")


async def test_c05_pagers_are_cat(server: SshTestServer, make_ctx: MakeCtx) -> None:
    ctx = make_ctx({"web-01": server})
    command = 'echo "$PAGER $GIT_PAGER $SYSTEMD_PAGER $FOO"'
    result = await run_ssh(
        ctx, hosts=["web-01"], command=command, env={"FOO": "it's fine"}
    )
    assert result.passed
    assert ctx.lines("stdout", host="web-01") == ["cat cat cat it's fine"]


async def test_c05_background_child_holding_stdout(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx({"web-01": server})
    started = time.monotonic()
    result = await run_ssh(ctx, hosts=["web-01"], command="sleep 20 & echo started")
    assert time.monotonic() - started < 4
    assert result.passed
    assert ctx.lines("stdout", host="web-01") == ["started"]


async def test_stdin_is_fed_when_given(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx({"web-01": server}, secret_env={"HALOTERM_SECRET_K": "v"})
    result = await run_ssh(ctx, hosts=["web-01"], command="cat", stdin="line one\n")
    assert result.passed
    assert ctx.lines("stdout", host="web-01") == ["line one"]


# --------------------------------------------------------------------- secrets


async def test_secrets_reach_the_env_but_not_the_command_line(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    secret = "s3 'cr\"et $HOME `x` \\n ü\nzq9 line"
    (server.workdir / "expected").write_text(secret)
    ctx = make_ctx({"web-01": server}, secret_env={"HALOTERM_SECRET_TOKEN": secret})
    command = (
        '[ "$HALOTERM_SECRET_TOKEN" = "$(cat expected)" ] && echo match;'
        " tr -d '\\000' </proc/$$/cmdline | grep -c \"$(printf 'z%s' q9)\""
    )
    result = await run_ssh(ctx, hosts=["web-01"], command=command)
    assert ctx.lines("stdout", host="web-01") == ["match", "0"]
    assert not result.passed  # grep -c found nothing: exit 1
    assert server.commands
    for received in server.commands:
        assert "s3" not in received
        assert "zq9" not in received


async def test_an_env_entry_holding_a_secret_travels_like_one(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    """A secret param rendered into ``env`` reaches the remote environment, never
    the exec request (remote ps, sshd logs)."""
    secret = "Pq4Lk9zXw2"
    ctx = make_ctx({"web-01": server}, secrets={"pw": secret})
    result = await run_ssh(
        ctx,
        hosts=["web-01"],
        command=f'[ "$DB_PASSWORD" = {secret[:4]}"{secret[4:]}" ] && echo match;'
        ' echo "$PLAIN"',
        env={"DB_PASSWORD": secret, "PLAIN": "visible"},
    )
    assert result.passed
    assert ctx.lines("stdout", host="web-01") == ["match", "visible"]
    assert server.commands
    for received in server.commands:
        assert secret not in received
        assert "PLAIN=visible" in received


def test_exec_line_keeps_command_and_env_quoted() -> None:
    line = build_exec("echo 'a b'", {"X": "1 2"}, secrets=True, stdin_null=True)
    assert line.startswith("exec /bin/sh -c ")
    assert "'echo '\"'\"'a b'\"'\"''" in line
    assert "'X=1 2'" in line


# --------------------------------------------------------------------- C06


async def _c06(ctx: LocalContext, probe: Path) -> None:
    command = f"sleep 5; touch {probe}"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2):
            await run_ssh(ctx, hosts=["web-01"], command=command)


async def test_c06_timeout_stops_the_remote_process(
    start_server: Callable[..., Awaitable[SshTestServer]],
    make_ctx: MakeCtx,
    tmp_path: Path,
) -> None:
    signalled = await start_server()
    refusing = await start_server(refuse_signals=True)
    ctx_a = make_ctx({"web-01": signalled})
    ctx_b = make_ctx({"web-01": refusing})
    probe_a, probe_b = tmp_path / "probe-a", tmp_path / "probe-b"
    started = time.monotonic()
    await asyncio.gather(_c06(ctx_a, probe_a), _c06(ctx_b, probe_b))
    assert time.monotonic() - started < 4.5
    assert ctx_a.cancel_note is None
    assert ctx_b.cancel_note is None
    assert "TERM" in signalled.signals
    assert refusing.signals  # asked, ignored; the process group kill did the work
    assert any(c.startswith("kill -s TERM -- -") for c in refusing.commands)
    await asyncio.sleep(6.5 - (time.monotonic() - started))
    assert not probe_a.exists()
    assert not probe_b.exists()
    assert final_statuses(ctx_a)["web-01"] is StepStatus.FAILED


async def test_c06_unconfirmed_stop_sets_cancel_note(
    start_server: Callable[..., Awaitable[SshTestServer]], make_ctx: MakeCtx
) -> None:
    # Signals refused and no process group of its own: nothing can stop it.
    server = await start_server(refuse_signals=True, new_session=False)
    ctx = make_ctx({"web-01": server})
    command = "sleep 30"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1):
            await run_ssh(ctx, hosts=["web-01"], command=command, kill_grace="200ms")
    assert ctx.cancel_note == "remote may still be running"
    assert ctx.host_statuses[-1].reason == "cancelled (remote may still be running)"


# --------------------------------------------------------------------- C07


@pytest.mark.parametrize(
    ("command", "reason", "exit_code", "signal"),
    [
        ("exit 3", "exit 3", 3, None),
        ("kill -TERM $$", "signal SIGTERM", None, "SIGTERM"),
        ("bash -c 'exit 300'", "exit 44", 44, None),
    ],
)
async def test_c07_exit_codes_and_signals(
    server: SshTestServer,
    make_ctx: MakeCtx,
    command: str,
    reason: str,
    exit_code: int | None,
    signal: str | None,
) -> None:
    ctx = make_ctx({"web-01": server})
    result = await run_ssh(ctx, hosts=["web-01"], command=command)
    assert not result.passed
    assert (result.reason, result.exit_code, result.signal) == (
        reason,
        exit_code,
        signal,
    )
    assert result.outputs["exit_code"] == exit_code
    assert ctx.host_statuses[-1] == ctx.host_statuses[-1].__class__(
        "web-01", StepStatus.FAILED, reason, exit_code, signal
    )


async def test_c07_segv_reports_core_when_dumped(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx({"web-01": server})
    command = "ulimit -c unlimited 2>/dev/null; kill -SEGV $$"
    result = await run_ssh(ctx, hosts=["web-01"], command=command)
    core = server.exits[-1].endswith(" core")
    assert result.reason == ("signal SIGSEGV (core)" if core else "signal SIGSEGV")
    assert result.exit_code is None
    assert result.signal == "SIGSEGV"


def test_signal_reason_names_core_dumps() -> None:
    assert signal_reason("SEGV", True) == "signal SIGSEGV (core)"
    assert signal_reason("TERM", False) == "signal SIGTERM"


async def test_c07_no_exit_status_is_a_failure(
    start_server: Callable[..., Awaitable[SshTestServer]], make_ctx: MakeCtx
) -> None:
    server = await start_server(no_exit_status=True)
    ctx = make_ctx({"web-01": server})
    result = await run_ssh(ctx, hosts=["web-01"], command="true")
    assert not result.passed
    assert result.reason == NO_EXIT_STATUS
    assert result.exit_code is None


# --------------------------------------------------------------------- C08


async def test_c08a_unknown_key_fails_before_running_then_trust(
    start_server: Callable[..., Awaitable[SshTestServer]],
    make_ctx: MakeCtx,
    identity: ClientIdentity,
) -> None:
    server = await start_server(trusted=False)
    ctx = make_ctx({"web-01": server})
    result = await run_ssh(ctx, hosts=["web-01"], command="echo ran")
    fingerprint = server.host_key.get_fingerprint("sha256")
    assert not result.passed
    assert result.reason is not None
    assert result.reason.startswith(
        f"unknown host key: web-01 ssh-ed25519 {fingerprint}"
    )
    assert server.commands == []

    settings = ctx.config
    assert isinstance(settings, Settings)
    summary = await trust_host("web-01", actor="alice", inventory=settings.inventory)
    assert summary == ("ssh-ed25519", fingerprint)
    trust_file = SshPaths.default().trust_file
    assert "haloterm-trusted-by=alice@" in trust_file.read_text()
    again = await trust_host("web-01", actor="bob", inventory=settings.inventory)
    assert again == summary
    assert len(trust_file.read_text().splitlines()) == 1

    ctx2 = make_ctx({"web-01": server})
    assert (await run_ssh(ctx2, hosts=["web-01"], command="echo ran")).passed


async def test_c08b_changed_key_fails_loudly_and_cannot_be_trusted_over(
    start_server: Callable[..., Awaitable[SshTestServer]],
    make_ctx: MakeCtx,
    identity: ClientIdentity,
) -> None:
    server = await start_server(trusted=False)
    old = asyncssh.generate_private_key("ssh-ed25519")
    identity.trust(known_hosts_line(server.host, server.port, old))
    ctx = make_ctx({"web-01": server})
    result = await run_ssh(ctx, hosts=["web-01"], command="echo ran")
    assert not result.passed
    assert result.reason is not None
    assert result.reason.startswith(
        "HOST KEY CHANGED for web-01: possible man-in-the-middle attack"
    )
    assert old.get_fingerprint("sha256") in result.reason
    assert server.commands == []
    settings = ctx.config
    assert isinstance(settings, Settings)
    with pytest.raises(HostKeyChanged):
        await trust_host("web-01", actor="mallory", inventory=settings.inventory)
    assert not SshPaths.default().trust_file.exists()


async def test_c08c_hashed_known_hosts_entry(
    start_server: Callable[..., Awaitable[SshTestServer]],
    make_ctx: MakeCtx,
    identity: ClientIdentity,
) -> None:
    server = await start_server(trusted=False)
    line = server.known_hosts_line(hashed=True)
    assert line.startswith("|1|")
    identity.trust(line)
    ctx = make_ctx({"web-01": server})
    result = await run_ssh(ctx, hosts=["web-01"], command="echo ran")
    assert result.passed, result.reason


# --------------------------------------------------------------------- C09


async def test_c09_dead_peer_is_detected_by_keepalives(
    server: SshTestServer, make_ctx: MakeCtx, identity: ClientIdentity
) -> None:
    proxy = await StallProxy(server.port).start()
    try:
        ctx = make_ctx({"web-01": proxy})
        identity.trust(known_hosts_line("127.0.0.1", proxy.port, server.host_key))
        options = {"keepalive_interval": "300ms", "keepalive_count_max": 2}
        step = asyncio.ensure_future(
            run_ssh(ctx, hosts=["web-01"], command="sleep 30; echo done", **options)
        )
        await asyncio.sleep(0.8)
        proxy.stall()
        started = time.monotonic()
        async with asyncio.timeout(8):
            result = await step
        assert time.monotonic() - started < 4
        assert not result.passed
        assert result.reason == CONNECTION_LOST
        assert pooled_connections(ctx.execution_id) <= 1

        # The next step cannot reconnect through the dead route: it times out.
        async with asyncio.timeout(8):
            again = await run_ssh(
                ctx, hosts=["web-01"], command="true", connect_timeout="1s", **options
            )
        assert again.reason == "connect timeout after 1.0s"
    finally:
        await proxy.close()


# --------------------------------------------------------------------- fan-out


async def test_fan_out_statuses_and_outcome_policies(
    start_server: Callable[..., Awaitable[SshTestServer]], make_ctx: MakeCtx
) -> None:
    good, bad_a, bad_b = [await start_server() for _ in range(3)]
    (good.workdir / "marker").write_text("")
    hosts: dict[str, Server] = {
        "web-01": good,
        "web-02": good,
        "web-03": bad_a,
        "web-04": bad_b,
    }
    for policy, passed in [("all", False), ("any", True), ("at_least:2", True)]:
        ctx = make_ctx(
            hosts, groups={"web": ["web-01", "group:rest"], "rest": ["tag:web"]}
        )
        result = await run_ssh(
            ctx, hosts=["group:web"], command="test -e marker", outcome=policy
        )
        assert result.passed is passed, policy
        assert list(result.outputs["hosts"]) == ["web-01", "web-02", "web-03", "web-04"]
        assert final_statuses(ctx) == {
            "web-01": StepStatus.PASSED,
            "web-02": StepStatus.PASSED,
            "web-03": StepStatus.FAILED,
            "web-04": StepStatus.FAILED,
        }
        assert result.outputs["hosts"]["web-03"]["exit_code"] == 1
        assert "exit_code" not in result.outputs
        if not passed:
            assert result.reason == "2 of 4 hosts failed: web-03 exit 1, web-04 exit 1"
    ctx = make_ctx(hosts)
    result = await run_ssh(
        ctx,
        hosts=["web-01", "web-03", "web-04"],
        command="test -e marker",
        outcome="at_least:2",
    )
    assert not result.passed
    assert good.connections == 4  # one per (host, port, user) per execution


async def test_concurrency_limits_hosts_in_flight(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    names = [f"app-{i:02d}" for i in range(6)]
    ctx = make_ctx(dict.fromkeys(names, server))
    started = time.monotonic()
    result = await run_ssh(ctx, hosts=["tag:app"], command="sleep 0.5", concurrency=2)
    assert result.passed
    assert time.monotonic() - started >= 1.5
    assert server.connections == 1


async def test_connection_reused_within_an_execution_and_closed_after(
    server: SshTestServer, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx({"web-01": server, "web-02": server})
    for _ in range(3):
        assert (await run_ssh(ctx, hosts=["web-01", "web-02"], command="true")).passed
    assert server.connections == 1
    assert pooled_connections(ctx.execution_id) == 1
    await close_pool(ctx.execution_id)
    assert pooled_connections(ctx.execution_id) == 0
    other = make_ctx({"web-01": server})
    assert (await run_ssh(other, hosts=["web-01"], command="true")).passed
    assert server.connections == 2


def test_host_expansion_errors() -> None:
    inventory = {"db-1": InventoryHost(tags=["db"])}
    groups = {"a": ["group:b"], "b": ["group:a"]}
    assert expand_hosts(["x", "tag:db", "x"], inventory, groups) == ["x", "db-1"]
    for bad in (["group:nope"], ["tag:none"], ["group:a"], []):
        with pytest.raises(HostResolutionError):
            expand_hosts(bad, inventory, groups)


def test_inputs_are_checked() -> None:
    bads: list[dict[str, Any]] = [
        {"outcome": "most"},
        {"env": {"A-B": "1"}},
        {"hosts": []},
    ]
    for bad in bads:
        with pytest.raises(ValueError):
            SshInputs.model_validate({"hosts": ["h"], "command": "true", **bad})
    inputs = SshInputs.model_validate(
        {"hosts": ["h"], "command": "true", "connect_timeout": "2s"}
    )
    assert inputs.connect_timeout == 2.0
    assert SshAction.command_fields == {"command"}


async def test_unknown_inventory_group_fails_the_step(make_ctx: MakeCtx) -> None:
    from haloterm.plugins.base import ActionError

    ctx = make_ctx({})
    with pytest.raises(ActionError, match="unknown host group: web"):
        await run_ssh(ctx, hosts=["group:web"], command="true")


async def test_connection_refused_fails_the_host(make_ctx: MakeCtx) -> None:
    proxy = StallProxy(1)
    proxy.port = _closed_port()
    ctx = make_ctx({"web-01": proxy})
    result = await run_ssh(ctx, hosts=["web-01"], command="true")
    assert result.reason is not None
    assert result.reason.startswith("cannot connect to web-01")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --------------------------------------------------------------------- OpenSSH


@pytest.fixture
def sshd(tmp_path: Path, identity: ClientIdentity) -> Any:
    if not OpenSshServer.available():
        pytest.skip("OpenSSH sshd is not installed")
    server = OpenSshServer(tmp_path / "sshd", identity.key).start()
    identity.trust(server.known_hosts_line(hashed=True))
    yield server
    server.stop()


@pytest.mark.sshd
async def test_sshd_exit_codes_signals_and_output(
    sshd: OpenSshServer, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx({"web-01": sshd})
    expectations = [
        ("echo hi; exit 3", "exit 3", 3, None),
        ("kill -TERM $$", "signal SIGTERM", None, "SIGTERM"),
        ("bash -c 'exit 300'", "exit 44", 44, None),
    ]
    for command, reason, exit_code, signal in expectations:
        result = await run_ssh(ctx, hosts=["web-01"], command=command)
        assert (result.reason, result.exit_code, result.signal) == (
            reason,
            exit_code,
            signal,
        )
    assert ctx.lines("stdout", host="web-01")[0] == "hi"
    started = time.monotonic()
    result = await run_ssh(ctx, hosts=["web-01"], command="sleep 20 & echo started")
    assert result.passed
    assert time.monotonic() - started < 4


@pytest.mark.sshd
async def test_sshd_secrets_stdin_and_pager(
    sshd: OpenSshServer, make_ctx: MakeCtx
) -> None:
    secret = "top 'secret\" $x"
    ctx = make_ctx({"web-01": sshd}, secret_env={"HALOTERM_SECRET_PW": secret})
    command = (
        'printf "%s\\n" "$HALOTERM_SECRET_PW" | rev; echo "$PAGER"; cat;'
        " test -t 1 || echo notty"
    )
    result = await run_ssh(ctx, hosts=["web-01"], command=command, stdin="fed\n")
    assert result.passed, result.reason
    assert ctx.lines("stdout", host="web-01") == [secret[::-1], "cat", "fed", "notty"]


@pytest.mark.sshd
async def test_sshd_tty_when_asked_and_refused_with_secrets(
    sshd: OpenSshServer, make_ctx: MakeCtx
) -> None:
    """``tty: true`` gets a terminal (for commands that insist on one); a step with
    secrets may not have one, since a tty echoes its input."""
    ctx = make_ctx({"web-01": sshd})
    command = "test -t 0 && test -t 1 && echo on-a-tty; echo $TERM"
    result = await run_ssh(ctx, hosts=["web-01"], command=command, tty=True)
    assert result.passed, result.reason
    assert ctx.lines("stdout", host="web-01") == ["on-a-tty", "xterm"]
    secret = make_ctx({"web-01": sshd}, secret_env={"HALOTERM_SECRET_PW": "pw-123"})
    with pytest.raises(ActionError, match="secrets cannot be passed to a tty"):
        await run_ssh(secret, hosts=["web-01"], command="true", tty=True)


@pytest.mark.sshd
async def test_sshd_as_a_proxyjump_host_from_ssh_config(
    sshd: OpenSshServer,
    server: SshTestServer,
    identity: ClientIdentity,
    make_ctx: MakeCtx,
) -> None:
    """A host reached through a jump host, as ``~/.ssh/config`` says. The jump
    host's key is checked like any other: unknown, the host fails before anything
    runs there, naming the jump host and how to trust it; trusted in haloterm's
    own trust file, it works."""
    (identity.ssh_dir / "config").write_text(
        "Host behind\n"
        "  HostName 127.0.0.1\n"
        f"  Port {server.port}\n"
        f"  User {identity.user}\n"
        f"  ProxyJump {identity.user}@127.0.0.1:{sshd.port}\n"
    )
    ctx = make_ctx({})
    result = await run_ssh(ctx, hosts=["behind"], command="echo through-the-jump")
    assert result.passed, result.reason
    assert ctx.lines("stdout", host="behind") == ["through-the-jump"]
    assert server.commands

    # Forget the jump host's key: the step fails on it, before the target runs.
    known = identity.ssh_dir / "known_hosts"
    lines = known.read_text().splitlines()
    jump_lines = [line for line in lines if not line.startswith("[")]
    known.write_text("\n".join(line for line in lines if line.startswith("[")) + "\n")
    ran = len(server.commands)
    ctx = make_ctx({})
    result = await run_ssh(ctx, hosts=["behind"], command="echo nope")
    assert not result.passed
    reason = result.reason or ""
    assert reason.startswith("jump host 127.0.0.1 (ProxyJump of behind): ")
    assert "unknown host key" in reason
    assert f"haloterm hosts trust 127.0.0.1 --port {sshd.port}" in reason
    assert len(server.commands) == ran

    # Trusted in haloterm's own file (what `haloterm hosts trust` writes): it works.
    trust = SshPaths.default().trust_file
    trust.parent.mkdir(parents=True, exist_ok=True)
    trust.write_text("\n".join(jump_lines) + "\n")
    ctx = make_ctx({})
    result = await run_ssh(ctx, hosts=["behind"], command="echo trusted-jump")
    assert result.passed, result.reason
    assert ctx.lines("stdout", host="behind") == ["trusted-jump"]


@pytest.mark.sshd
async def test_sshd_c06_timeout_stops_the_remote_process(
    sshd: OpenSshServer, make_ctx: MakeCtx, tmp_path: Path
) -> None:
    ctx = make_ctx({"web-01": sshd})
    probe = tmp_path / "probe"
    started = time.monotonic()
    await _c06(ctx, probe)
    assert ctx.cancel_note is None
    await asyncio.sleep(6.5 - (time.monotonic() - started))
    assert not probe.exists()
