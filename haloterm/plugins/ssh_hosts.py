"""Where SSH hosts are and which keys they may present.

Host names in a step are resolved like OpenSSH resolves them, with haloterm's inventory
on top:

* ``group:<name>`` expands to the members of ``Settings.groups[name]`` (members may
  name other groups or tags), ``tag:<t>`` to every inventory host carrying that tag,
  anything else is a host name.
* For each host, the inventory's ``address``/``port``/``user`` override
  ``~/.ssh/config``, which asyncssh reads for ``HostName``, ``Port``, ``User``,
  ``IdentityFile``, ``ProxyJump`` and the rest; the step's own ``user``/``port`` win
  over both. With an inventory ``address``, ``~/.ssh/config`` is matched against that
  address rather than the inventory name.

Host keys are checked against ``~/.ssh/known_hosts`` (hashed ``|1|`` entries work) and
haloterm's own trust file, ``<user data dir>/known_hosts``. Verification is never
turned off: an unknown key fails the host and names the key, a changed key fails it as
a possible man-in-the-middle attack, and the only way to trust a key is
:func:`trust_host`, which refuses to replace a key already known.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh

from haloterm.config import InventoryHost, data_dir

logger = logging.getLogger(__name__)

DEFAULT_PORT = 22


class HostResolutionError(ValueError):
    """A step names a group or tag that the inventory does not have."""


class HostKeyError(Exception):
    """A server's host key cannot be trusted; ``reason`` is the operator-facing text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownHostKey(HostKeyError):
    """No known_hosts file holds a key for the host."""


class HostKeyChanged(HostKeyError):
    """The host presents a key other than the one known for it."""


@dataclass(frozen=True)
class SshPaths:
    """The files SSH reads: client config, the user's known_hosts, our trust file.

    Attributes:
        config: OpenSSH client config files, read in order (missing ones are skipped).
        known_hosts: the user's known_hosts files (read only).
        trust_file: haloterm's own known_hosts file, where :func:`trust_host` appends.
    """

    config: tuple[Path, ...]
    known_hosts: tuple[Path, ...]
    trust_file: Path

    @classmethod
    def default(cls) -> SshPaths:
        """The paths OpenSSH and haloterm use for the current user."""
        ssh_dir = Path.home() / ".ssh"
        return cls(
            config=(ssh_dir / "config",),
            known_hosts=(ssh_dir / "known_hosts",),
            trust_file=data_dir() / "known_hosts",
        )

    def config_files(self) -> list[str]:
        """The config files that exist, as asyncssh's ``config=`` option takes them."""
        return [str(p) for p in self.config if p.is_file()]

    def known_hosts_files(self) -> list[Path]:
        """Every known_hosts file that exists, the user's first."""
        return [p for p in (*self.known_hosts, self.trust_file) if p.is_file()]


@dataclass(frozen=True)
class HostTarget:
    """Where to connect for one host name of a step.

    Attributes:
        name: the host as the step names it (what statuses and output are keyed by).
        connect_host: what is handed to asyncssh: the inventory address, or the name,
            which ``~/.ssh/config`` may map further.
        port: an explicit port, or None to let ``~/.ssh/config`` decide (default 22).
        user: an explicit user, or None to let ``~/.ssh/config`` decide (default: the
            local user).
    """

    name: str
    connect_host: str
    port: int | None = None
    user: str | None = None


def expand_hosts(
    specs: Iterable[str],
    inventory: Mapping[str, InventoryHost],
    groups: Mapping[str, list[str]],
) -> list[str]:
    """Turn a step's ``hosts`` list into host names, in order, without duplicates.

    Args:
        specs: names, ``group:<name>`` and ``tag:<t>`` entries.
        inventory: ``Settings.inventory``.
        groups: ``Settings.groups``.

    Returns:
        The host names.

    Raises:
        HostResolutionError: an unknown group, a tag no host carries, a group that
            contains itself, or nothing at all to run on.
    """
    found: dict[str, None] = {}

    def visit(spec: str, trail: tuple[str, ...]) -> None:
        spec = spec.strip()
        if spec.startswith("group:"):
            group = spec[len("group:") :]
            if group in trail:
                chain = " -> ".join((*trail, group))
                raise HostResolutionError(f"group contains itself: {chain}")
            if group not in groups:
                raise HostResolutionError(f"unknown host group: {group}")
            for member in groups[group]:
                visit(member, (*trail, group))
        elif spec.startswith("tag:"):
            tag = spec[len("tag:") :]
            tagged = [name for name, host in inventory.items() if tag in host.tags]
            if not tagged:
                raise HostResolutionError(f"no inventory host has tag: {tag}")
            found.update(dict.fromkeys(tagged))
        elif spec:
            found[spec] = None

    for spec in specs:
        visit(spec, ())
    if not found:
        raise HostResolutionError("no hosts to run on")
    return list(found)


def host_target(
    name: str,
    inventory: Mapping[str, InventoryHost],
    *,
    port: int | None = None,
    user: str | None = None,
) -> HostTarget:
    """Apply the inventory, then the step's own ``port``/``user``, to one host name."""
    entry = inventory.get(name)
    if entry is None:
        return HostTarget(name, name, port, user)
    return HostTarget(
        name=name,
        connect_host=entry.address or name,
        port=port if port is not None else entry.port,
        user=user if user is not None else entry.user,
    )


def load_known_hosts(paths: SshPaths) -> asyncssh.SSHKnownHosts:
    """Read every known_hosts file into one set of trusted keys (blocking file I/O)."""
    known = asyncssh.SSHKnownHosts()
    for path in paths.known_hosts_files():
        known.load(path.read_text(encoding="utf-8", errors="replace"))
    return known


def key_summary(key: asyncssh.SSHKey) -> tuple[str, str]:
    """A key's type and SHA256 fingerprint: ``("ssh-ed25519", "SHA256:...")``."""
    return key.get_algorithm(), key.get_fingerprint("sha256")


@dataclass(frozen=True)
class ResolvedHost:
    """Where a connection to a target really goes, after ``~/.ssh/config``."""

    host: str
    port: int
    key_host: str
    """The name known_hosts entries are matched against (``HostKeyAlias`` or host)."""
    config: list[str]
    tunnel: str | None = None
    """``ProxyJump`` from the config: ``[user@]host[:port]``, comma-separated."""


async def resolve(target: HostTarget, paths: SshPaths) -> ResolvedHost:
    """Apply ``~/.ssh/config`` to a target: real host name, port, key alias and
    jump hosts."""
    config = paths.config_files()
    options = await asyncssh.SSHClientConnectionOptions.construct(
        config=config,
        host=target.connect_host,
        port=target.port if target.port is not None else (),
        known_hosts=None,
        client_keys=None,
        agent_path=None,
    )
    alias = options.host_key_alias
    tunnel = options.tunnel if isinstance(options.tunnel, str) else None
    return ResolvedHost(
        options.host, options.port, alias or options.host, config, tunnel
    )


def jump_hosts(resolved: ResolvedHost) -> list[HostTarget]:
    """The jump hosts a target's ``ProxyJump`` puts in front of it, first hop
    first; empty when it is reached directly.

    Raises:
        HostResolutionError: a hop's port is not a number.
    """
    spec = resolved.tunnel
    if not spec or spec.lower() == "none":
        return []
    hops: list[HostTarget] = []
    for hop in spec.split(","):
        user, _, rest = hop.strip().rpartition("@")
        host, port = rest, ""
        if rest.startswith("["):
            host, _, tail = rest[1:].partition("]")
            port = tail.removeprefix(":")
        elif rest.count(":") == 1:
            host, _, port = rest.partition(":")
        if port and not port.isdigit():
            raise HostResolutionError(f"ProxyJump {hop.strip()!r}: port {port!r}")
        hops.append(HostTarget(host, host, int(port) if port else None, user or None))
    return hops


def trusted_keys(
    known: asyncssh.SSHKnownHosts, host: ResolvedHost
) -> list[asyncssh.SSHKey]:
    """The host keys the known_hosts files hold for a host (never its CA keys)."""
    port = None if host.port == DEFAULT_PORT else host.port
    result: Any = known.match(host.key_host, "", port)
    keys: list[asyncssh.SSHKey] = list(result[0])
    return keys


async def fetch_host_key(
    host: ResolvedHost, algs: list[str] | None = None, *, limit: float = 10.0
) -> asyncssh.SSHKey:
    """Connect only far enough to learn the key the server presents.

    Args:
        host: where to connect.
        algs: host key algorithms to ask for (to compare like with like); None for the
            client's defaults.
        limit: seconds for the whole probe.

    Raises:
        HostKeyError: the server could not be reached or presented no key.
    """
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(
                host.host,
                host.port,
                config=host.config,
                server_host_key_algs=algs if algs else (),
            ),
            limit,
        )
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise HostKeyError(
            f"cannot fetch the host key of {host.host} port {host.port}: "
            f"{_describe(exc)}"
        ) from None
    if key is None:
        raise HostKeyError(f"{host.host} port {host.port} presented no host key")
    return key


async def explain_untrusted(
    name: str,
    host: ResolvedHost,
    known: asyncssh.SSHKnownHosts,
    *,
    trust_port: int | None = None,
) -> HostKeyError:
    """Work out why a handshake refused a host key, for the step's reason.

    Args:
        name: the host as the step (or a ProxyJump) names it.
        host: where the connection went.
        known: the known hosts it was checked against.
        trust_port: a port the trust hint must name (a jump host's, given in
            ``ProxyJump`` rather than in the config or the inventory).

    Returns:
        :class:`UnknownHostKey` (no key on file; the reason shows the offered key),
        :class:`HostKeyChanged` (a different key on file), or a plain
        :class:`HostKeyError` when the key is on file yet was refused (revoked).
    """
    known_keys = trusted_keys(known, host)
    algs = sorted({alg.decode() for k in known_keys for alg in k.sig_algorithms})
    try:
        offered = await fetch_host_key(host, algs or None)
    except HostKeyError as exc:
        return exc
    keytype, fingerprint = key_summary(offered)
    where = _where(host)
    if not known_keys:
        return UnknownHostKey(
            f"unknown host key: {name} {keytype} {fingerprint} ({where}); "
            "check the fingerprint, then trust it with: haloterm hosts trust "
            + name
            + (f" --port {trust_port}" if trust_port is not None else "")
        )
    if not _among(offered, known_keys):
        return HostKeyChanged(_changed_reason(name, where, offered, known_keys))
    return HostKeyError(
        f"host key for {name} ({where}) is on file, yet a host key was refused: "
        "if it is reached through a jump host (ProxyJump), that host's key is "
        "unknown or changed; else the key on file is revoked"
    )


async def trust_host(
    host: str,
    port: int | None = None,
    *,
    actor: str,
    inventory: Mapping[str, InventoryHost] | None = None,
    paths: SshPaths | None = None,
    now: datetime | None = None,
) -> tuple[str, str]:
    """Fetch a host's key and add it to haloterm's trust file.

    The new line carries who trusted the key and when as its comment. The caller
    records the audit row; this function only touches the trust file.

    Args:
        host: a host name as steps use it (inventory name, ssh config alias, address).
        port: a port that overrides the inventory and ``~/.ssh/config``.
        actor: who trusts the key (kept in the trust file's comment).
        inventory: ``Settings.inventory``, for addresses and ports.
        paths: where the SSH files are; :meth:`SshPaths.default` when None.
        now: the clock's current time (UTC) for the comment.

    Returns:
        The key's type and SHA256 fingerprint. A key already trusted is returned as is,
        without a second line.

    Raises:
        HostKeyChanged: a known_hosts file already holds a different key for the host;
            nothing is written (remove the old entry by hand first).
        HostKeyError: the host could not be reached.
    """
    paths = paths or SshPaths.default()
    target = host_target(host, inventory or {}, port=port)
    resolved = await resolve(target, paths)
    known = await asyncio.to_thread(load_known_hosts, paths)
    known_keys = trusted_keys(known, resolved)
    algs = sorted({alg.decode() for k in known_keys for alg in k.sig_algorithms})
    key = await fetch_host_key(resolved, algs or None)
    summary = key_summary(key)
    if _among(key, known_keys):
        return summary
    if known_keys:
        raise HostKeyChanged(_changed_reason(host, _where(resolved), key, known_keys))

    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pattern = resolved.key_host
    if resolved.port != DEFAULT_PORT:
        pattern = f"[{pattern}]:{resolved.port}"
    keytype, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    actor_word = "".join(ch for ch in actor if ch.isprintable() and not ch.isspace())
    line = f"{pattern} {keytype} {blob} haloterm-trusted-by={actor_word}@{stamp}\n"
    await asyncio.to_thread(_append_line, paths.trust_file, line)
    logger.info("trusted host key of %s: %s %s", host, *summary)
    return summary


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="ascii") as fh:
        fh.write(line)
    path.chmod(0o600)


def _blob(key: asyncssh.SSHKey) -> bytes:
    return key.export_public_key("openssh").split()[1]


def _among(key: asyncssh.SSHKey, keys: list[asyncssh.SSHKey]) -> bool:
    # Compared by public blob: SSHKey equality depends on how each key was loaded.
    blob = _blob(key)
    return any(_blob(k) == blob for k in keys)


def _where(host: ResolvedHost) -> str:
    return f"{host.host} port {host.port}"


def _changed_reason(
    name: str, where: str, offered: asyncssh.SSHKey, known: list[asyncssh.SSHKey]
) -> str:
    old = ", ".join(" ".join(key_summary(k)) for k in known)
    new = " ".join(key_summary(offered))
    return (
        f"HOST KEY CHANGED for {name}: possible man-in-the-middle attack ({where} "
        f"now offers {new}; known_hosts has {old}). If the change is expected, "
        f"remove the old entry from known_hosts, check the new fingerprint and "
        f"trust the host again"
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, asyncssh.Error):
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
