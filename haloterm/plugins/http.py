"""The ``http`` action: one HTTP exchange under one deadline, with safe redirects.

The exchange goes straight to an httpx transport: haloterm follows redirects itself,
hop by hop, so that credentials never cross to another origin, and httpx's client
never logs a URL that may carry a secret. Everything the step logs (request line,
status, response headers, the start of the body) is masked before it is written.

Extraction paths (``extract: {user_id: data.items[0].id}``) are dotted paths into the
JSON response: ``name`` or ``["name with.dots"]`` selects a key, ``[0]`` an item
(``[-1]`` the last). A leading ``$`` or ``$.`` is allowed and ignored.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import functools
import json
import logging
import os
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote, quote_plus

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from haloterm import __version__
from haloterm.masking import mask_tree
from haloterm.models import Duration
from haloterm.plugins.base import (
    Action,
    ActionContext,
    ActionError,
    ActionInputs,
    OutputSink,
    StepResult,
)

logger = logging.getLogger(__name__)

MASK = "******"
BODY_OUTPUT_CAP = 64 * 1024
"""Largest body text kept in the ``body`` output, and largest ``json`` output."""
JSON_PARSE_CAP = 1024 * 1024
"""Largest body read for ``extract``; beyond it the response is not parsed."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RESERVED_OUTPUTS = frozenset({"status", "reason", "headers", "json", "body", "url"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SENSITIVE = re.compile(
    r"auth|cookie|token|secret|passw|api[-_]?key|session|signature|credential|^sig$",
    re.IGNORECASE,
)

USE_A_SECRET = "use a secret param or auth.secret, never the runbook file"

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def is_sensitive_name(name: str) -> bool:
    """Whether a header or query parameter name suggests its value is a credential."""
    return bool(_SENSITIVE.search(name))


# ---------------------------------------------------------------------- JSON paths

_PATH_TOKEN = re.compile(
    r"""\.(?P<name>[^.\[\]]+)          # .name
      | \[(?P<index>-?\d+)\]           # [3]
      | \["(?P<dq>(?:[^"\\]|\\.)*)"\]  # ["key"]
      | \['(?P<sq>[^']*)'\]            # ['key']
    """,
    re.VERBOSE,
)


def parse_path(path: str) -> list[str | int]:
    """Split an extraction path into keys (str) and list indexes (int).

    Args:
        path: a path like ``data.items[0].id``, ``$.ok`` or ``data["a.b"]``.

    Returns:
        The steps of the path, in order; empty for ``$`` (the whole document).

    Raises:
        ValueError: the path is not of that form.
    """
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    if text and text[0] not in ".[":
        text = "." + text
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _PATH_TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"cannot read {path!r} at character {pos + 1}")
        if match["index"] is not None:
            parts.append(int(match["index"]))
        elif match["dq"] is not None:
            parts.append(json.loads(f'"{match["dq"]}"'))
        else:
            parts.append(match["name"] if match["name"] is not None else match["sq"])
        pos = match.end()
    return parts


def lookup(document: Any, path: str) -> Any:
    """The value at ``path`` (see :func:`parse_path`) in a parsed JSON document.

    Raises:
        ValueError: the path is malformed or leads nowhere; the message says where.
    """
    value = document
    walked = "$"
    for part in parse_path(path):
        if isinstance(part, int):
            if not isinstance(value, list):
                raise ValueError(f"{walked} is not a list")
            if not -len(value) <= part < len(value):
                raise ValueError(f"{walked} has no item {part} (length {len(value)})")
            value = value[part]
            walked += f"[{part}]"
        else:
            if not isinstance(value, dict):
                raise ValueError(f"{walked} is not an object")
            if part not in value:
                raise ValueError(f"{walked} has no key {part!r}")
            value = value[part]
            walked += f".{part}"
    return value


# -------------------------------------------------------------------------- inputs


class HttpAuth(BaseModel):
    """Credentials added to the request from a named secret."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["bearer", "basic"]
    """``bearer`` sends ``Authorization: Bearer <secret>``; ``basic`` sends the user
    name and the secret."""
    secret: str
    """The name of the secret (from the secrets file or environment), not its value."""
    username: str | None = None
    """The user name for ``basic``."""

    @model_validator(mode="after")
    def _basic_needs_user(self) -> HttpAuth:
        if self.type == "basic" and not self.username:
            raise ValueError("basic auth needs a username")
        return self


class HttpInputs(ActionInputs):
    """The ``with`` block of an ``http`` step."""

    method: Annotated[Method, BeforeValidator(_upper)] = "GET"
    """The request method; lower case is accepted."""
    url: str
    """An ``http://`` or ``https://`` URL."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers."""
    query: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Query parameters added to those already in the URL."""
    json_body: Any = Field(default=None, alias="json")
    """A JSON request body (sent as ``application/json``)."""
    body: str | None = None
    """A raw text request body."""
    form: dict[str, str] | None = None
    """A form request body (``application/x-www-form-urlencoded``)."""
    auth: HttpAuth | None = None
    """Credentials from a named secret."""
    expect_status: list[int] = Field(default_factory=lambda: list(range(200, 300)))
    """Statuses that pass the step; any 2xx by default."""
    follow_redirects: bool = False
    """Follow redirects; credentials are dropped when one leads to another origin."""
    max_redirects: int = Field(default=5, ge=0, le=50)
    """How many redirects to follow before failing."""
    allow_insecure_redirects: bool = False
    """Follow a redirect from ``https`` to ``http``."""
    verify_tls: bool = True
    """Verify the server's certificate and host name."""
    deadline: Duration | None = None
    """A limit on the whole exchange (connect, redirects, body) within the step's
    own timeout."""
    extract: dict[str, str] = Field(default_factory=dict)
    """Output name -> path into the JSON response (``data.items[0].id``)."""
    max_body_log: int = Field(default=64 * 1024, ge=0)
    """Bytes of the response body written to the step's log."""

    @model_validator(mode="after")
    def _check(self) -> HttpInputs:
        given = [n for n in ("json", "body", "form") if self._has_body(n)]
        if len(given) > 1:
            raise ValueError(f"give at most one of json, body, form (got {given})")
        for name, path in self.extract.items():
            if name in RESERVED_OUTPUTS:
                raise ValueError(f"extract: {name!r} is a reserved output name")
            if "{{" not in path:
                parse_path(path)
        return self

    def _has_body(self, name: str) -> bool:
        if name == "json":
            return "json_body" in self.model_fields_set
        return getattr(self, name) is not None


# ------------------------------------------------------------------------- helpers


class Redactor:
    """Masks what the step writes: the context's secrets plus credentials it read."""

    def __init__(self, ctx: ActionContext) -> None:
        self._ctx = ctx
        self._extra: set[str] = set()

    def add(self, secret: str) -> None:
        """Mask ``secret`` too (and its percent-encoded forms)."""
        if len(secret) >= 3:
            self._extra |= {secret, quote(secret, safe=""), quote_plus(secret)}

    def __call__(self, text: str) -> str:
        for value in sorted(self._extra, key=len, reverse=True):
            text = text.replace(value, MASK)
        return self._ctx.mask(text)

    def url(self, url: httpx.URL) -> str:
        """The URL for display: no password, no credential-like query values."""
        if url.password:
            url = url.copy_with(username=url.username, password=MASK)
        if url.query:
            params = [
                (k, MASK if is_sensitive_name(k) else v)
                for k, v in url.params.multi_items()
            ]
            url = url.copy_with(params=params)
        return self(str(url).replace(quote(MASK, safe=""), MASK))

    def headers(self, headers: httpx.Headers) -> dict[str, str]:
        """Headers for display, credential-like values masked, repeats joined."""
        shown: dict[str, str] = {}
        for name, value in headers.multi_items():
            value = MASK if is_sensitive_name(name) else self(value)
            shown[name] = f"{shown[name]}, {value}" if name in shown else value
        return shown


def origin(url: httpx.URL) -> tuple[str, str, int]:
    """The (scheme, host, port) a URL belongs to, with default ports filled in."""
    port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
    return (url.scheme, url.host, port)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def transport_failure(
    exc: httpx.TransportError, url: httpx.URL, proxy: str | None = None
) -> str:
    """A short reason for an exchange that got no response, without secrets.

    Args:
        exc: what httpx raised.
        url: the request's URL; only its host and port appear in the reason.
        proxy: the proxy the request went through, if any; a failure to reach it
            names the proxy's host and port instead.

    Returns:
        ``connection refused: 127.0.0.1:9``, ``cannot resolve host: x.example``,
        ``TLS certificate not trusted: host:443 (...)``, ``timeout``, ...
    """
    where = f"{url.host}:{origin(url)[2]}"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ProxyError):
        return f"proxy refused the tunnel to {where} ({exc})"
    if proxy is not None:
        via = httpx.URL(proxy)
        url, where = via, f"proxy {via.host}:{origin(via)[2]}"
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or "verification failed"
            return f"TLS certificate not trusted: {where} ({detail})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {where} ({cause.reason or 'handshake failed'})"
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused: {where}"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve host: {url.host}"
    text = str(exc)
    if "refused" in text.lower() or f"[Errno {errno.ECONNREFUSED}]" in text:
        return f"connection refused: {where}"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {where}"
    return f"{type(exc).__name__}: {where}"


def _basic(user: str, password: str, redact: Redactor) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    redact.add(password)
    redact.add(token)
    return f"Basic {token}"


@functools.lru_cache(maxsize=8)
def _ssl_context(
    verify: bool, cafile: str | None, capath: str | None
) -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds, so each trust setting gets
    # one context, shared; the SSL_CERT_* variables are part of the key because
    # httpx honours them.
    return httpx.create_ssl_context(verify=verify)


def proxy_for(url: httpx.URL) -> str | None:
    """The proxy for ``url`` from ``HTTP(S)_PROXY``/``ALL_PROXY``, unless ``NO_PROXY``
    exempts its host; None for a direct connection."""
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass(url.host):
        return None
    return proxies.get(url.scheme) or proxies.get("all")


async def _transport(
    verify: bool, proxy: str | None = None
) -> httpx.AsyncHTTPTransport:
    env = os.environ
    key = (verify, env.get("SSL_CERT_FILE"), env.get("SSL_CERT_DIR"))
    # The first load of a CA bundle reads files: keep it off the event loop.
    context = await asyncio.to_thread(_ssl_context, *key)
    return httpx.AsyncHTTPTransport(verify=context, retries=0, proxy=proxy)


class _Transports:
    """One transport per proxy (or none) used during one exchange, closed together."""

    def __init__(self, verify: bool) -> None:
        self._verify = verify
        self._open: dict[str | None, httpx.AsyncHTTPTransport] = {}

    async def get(self, proxy: str | None) -> httpx.AsyncHTTPTransport:
        if proxy not in self._open:
            self._open[proxy] = await _transport(self._verify, proxy)
        return self._open[proxy]

    async def __aenter__(self) -> _Transports:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for transport in self._open.values():
            await transport.aclose()


async def post_json(url: str, payload: Any) -> tuple[int, str, str]:
    """POST ``payload`` as JSON once, without following redirects or logging the URL.

    Args:
        url: where to post; it may be a credential (a Slack webhook), so it is never
            logged here.
        payload: a JSON-serialisable document.

    Returns:
        The status code, the reason phrase and up to 1 KiB of the response text.

    Raises:
        httpx.TransportError: no response came back (describe it with
            :func:`transport_failure`).
        httpx.InvalidURL: the URL cannot be used.

    The caller bounds the whole exchange (``asyncio.timeout``); each network
    operation also gives up after 30 seconds.
    """
    request = httpx.Request(
        "POST", url, json=payload, headers={"User-Agent": f"haloterm/{__version__}"}
    )
    request.extensions["timeout"] = httpx.Timeout(30.0).as_dict()
    async with await _transport(True, proxy_for(request.url)) as transport:
        response = await transport.handle_async_request(request)
        try:
            start, _ = await _read_bounded(response, 1024)
        finally:
            await response.aclose()
    text = start.decode("utf-8", "replace")
    return response.status_code, response.reason_phrase, text


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the (decoded) body, and whether that is all of it."""
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) > limit:
            return bytes(buf[:limit]), False
    return bytes(buf), True


# -------------------------------------------------------------------------- action


@dataclass
class _Hop:
    """The request in flight (the URL a transport error is reported against)."""

    request: httpx.Request
    timeout: httpx.Timeout
    proxy: str | None = None


@dataclass
class _Reply:
    response: httpx.Response
    url: httpx.URL
    body: bytes
    complete: bool


class HttpAction(Action):
    """Send one HTTP request and check the response's status.

    Outputs: ``status``, ``reason``, ``headers`` (masked), ``url`` (the final one,
    masked), ``json`` (the parsed body when it is JSON and at most 64 KiB, else
    None), ``body`` (text, at most 64 KiB) and one value per ``extract`` entry.
    """

    name: ClassVar[str] = "http"
    Inputs: ClassVar[type[ActionInputs]] = HttpInputs
    description: ClassVar[str] = "Send an HTTP request and check the status"

    def static_check(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Refuse literal URLs that are not http(s), and credentials in the file.

        Secrets belong in the secrets file or environment, never in a runbook: a
        literal password in the URL or a literal value for a credential-like header
        (``Authorization``, ``X-Api-Key``, ...) is an error. Templated values are
        checked when the step runs.
        """
        problems: list[tuple[str, str]] = []
        url = inputs.get("url")
        if isinstance(url, str) and "{{" not in url:
            try:
                parsed: httpx.URL | None = httpx.URL(url)
            except (httpx.InvalidURL, TypeError):
                parsed = None
            if parsed is None or parsed.scheme not in _DEFAULT_PORTS or not parsed.host:
                problems.append(
                    ("url", "must be an http:// or https:// URL with a host")
                )
            elif parsed.password:
                problems.append(("url", f"a password in the URL: {USE_A_SECRET}"))
        headers = inputs.get("headers")
        for name, value in headers.items() if isinstance(headers, dict) else ():
            literal = isinstance(value, str) and value and "{{" not in value
            if literal and is_sensitive_name(str(name)):
                problems.append(
                    (f"headers.{name}", f"a literal credential: {USE_A_SECRET}")
                )
        return problems

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        """Send the request, follow redirects if asked, and judge the response.

        Raises:
            ActionError: the URL is unusable, no response came (``connection
                refused: host:port``, ``timeout``), a redirect was refused, or a
                secret is not configured.
        """
        assert isinstance(inputs, HttpInputs)
        redact = Redactor(ctx)
        request = self._build_request(inputs, ctx, redact)
        sink = ctx.output("stdout")
        try:
            reply = await self._exchange_within_deadline(
                inputs, ctx, request, sink, redact
            )
            return self._judge(inputs, reply, sink, redact)
        finally:
            sink.close()

    # -------------------------------------------------------------- preparing

    def _build_request(
        self, inputs: HttpInputs, ctx: ActionContext, redact: Redactor
    ) -> httpx.Request:
        url = self._parse_url(inputs.url, redact)
        headers = httpx.Headers(
            {"User-Agent": f"haloterm/{__version__}", "Accept": "*/*"}
        )
        headers.update(inputs.headers)
        for name, value in inputs.headers.items():
            if is_sensitive_name(name):
                redact.add(value)
                redact.add(value.partition(" ")[2])  # the token after a scheme
        for name, item in inputs.query.items():
            if is_sensitive_name(name):
                redact.add(_query_value(item))
        for name, value in url.params.multi_items():
            if is_sensitive_name(name):
                redact.add(value)
        if url.username or url.password:
            # Credentials in the URL become a Basic header, so the URL itself (which
            # may be shown) carries none.
            headers["Authorization"] = _basic(url.username, url.password, redact)
            url = url.copy_with(username=None, password=None)
        if inputs.auth is not None:
            headers["Authorization"] = self._auth_header(inputs.auth, ctx, redact)
        if inputs.query:
            url = url.copy_merge_params(
                {k: _query_value(v) for k, v in inputs.query.items()}
            )
        kwargs: dict[str, Any] = {}
        if "json_body" in inputs.model_fields_set:
            # Encoded here so that ``json: null`` still sends a body.
            kwargs["content"] = json.dumps(
                inputs.json_body, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        elif inputs.body is not None:
            kwargs["content"] = inputs.body.encode("utf-8")
        elif inputs.form is not None:
            kwargs["data"] = inputs.form
        return httpx.Request(inputs.method, url, headers=headers, **kwargs)

    @staticmethod
    def _parse_url(raw: str, redact: Redactor) -> httpx.URL:
        problem = None
        try:
            url = httpx.URL(raw)
        except (httpx.InvalidURL, TypeError):
            problem = "invalid URL"
        else:
            if url.scheme not in _DEFAULT_PORTS or not url.host:
                problem = "URL must be http:// or https:// with a host"
        if problem is not None:
            # The URL may hold a secret: show only its masked form, and keep the
            # parser's exception out of the chain.
            raise ActionError(f"{problem}: {redact(raw.split('@')[-1])}")
        return url

    @staticmethod
    def _auth_header(auth: HttpAuth, ctx: ActionContext, redact: Redactor) -> str:
        secret = ctx.secret(auth.secret)
        if auth.type == "bearer":
            redact.add(secret)
            return f"Bearer {secret}"
        return _basic(auth.username or "", secret, redact)

    # -------------------------------------------------------------- exchanging

    async def _exchange_within_deadline(
        self,
        inputs: HttpInputs,
        ctx: ActionContext,
        request: httpx.Request,
        sink: OutputSink,
        redact: Redactor,
    ) -> _Reply:
        loop = asyncio.get_running_loop()
        limits = []
        if inputs.deadline is not None:
            limits.append(loop.time() + inputs.deadline)
        if ctx.deadline is not None:
            limits.append(loop.time() + (ctx.deadline - time.monotonic()))
        when = min(limits) if limits else None
        # With a deadline over the whole exchange, httpx's per-operation timeouts
        # would only cut it short; without one they are the only bound.
        unbounded = when is None
        per_op = httpx.Timeout(30.0, connect=10.0) if unbounded else httpx.Timeout(None)
        hop = _Hop(request, per_op)
        try:
            async with asyncio.timeout_at(when), _Transports(inputs.verify_tls) as tr:
                return await self._exchange(inputs, ctx, tr, hop, sink, redact)
        except TimeoutError:
            failure = "timeout"
        except httpx.TransportError as exc:
            failure = transport_failure(exc, hop.request.url, hop.proxy)
        # Raised outside the handler: the httpx exception, which holds the request
        # and its headers, must not ride along as __context__.
        reason = redact(failure)
        ctx.log.info("http %s failed: %s", inputs.method, reason)
        sink.write(f"! {reason}\n".encode())
        raise ActionError(reason)

    async def _exchange(
        self,
        inputs: HttpInputs,
        ctx: ActionContext,
        transports: _Transports,
        hop: _Hop,
        sink: OutputSink,
        redact: Redactor,
    ) -> _Reply:
        hops = 0
        while True:
            request = hop.request
            request.extensions["timeout"] = hop.timeout.as_dict()
            hop.proxy = proxy_for(request.url)
            line = f"> {request.method} {redact.url(request.url)}"
            if hop.proxy is not None:
                via = httpx.URL(hop.proxy)
                if via.password:
                    _basic(via.username, via.password, redact)  # to mask its forms
                line += f" (via proxy {redact.url(via)})"
            sink.write(f"{line}\n".encode())
            transport = await transports.get(hop.proxy)
            response = await transport.handle_async_request(request)
            try:
                following = None
                if inputs.follow_redirects:
                    following = self._next_hop(inputs, ctx, request, response, redact)
                if following is None:
                    limit = max(inputs.max_body_log, JSON_PARSE_CAP)
                    body, complete = await _read_bounded(response, limit)
                    return _Reply(response, request.url, body, complete)
            finally:
                await response.aclose()
            hops += 1
            status = f"{response.status_code} {response.reason_phrase}"
            sink.write(f"< {status} -> {redact.url(following.url)}\n".encode())
            if hops > inputs.max_redirects:
                raise ActionError(
                    f"too many redirects (more than {inputs.max_redirects})"
                )
            hop.request = following

    def _next_hop(
        self,
        inputs: HttpInputs,
        ctx: ActionContext,
        request: httpx.Request,
        response: httpx.Response,
        redact: Redactor,
    ) -> httpx.Request | None:
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            return None
        try:
            target = request.url.join(location)
        except httpx.InvalidURL:
            target = None
        if target is None or target.scheme not in _DEFAULT_PORTS or not target.host:
            raise ActionError("redirect to an unusable location")
        target = target.copy_with(username=None, password=None, fragment=None)
        if (
            request.url.scheme == "https"
            and target.scheme == "http"
            and not inputs.allow_insecure_redirects
        ):
            raise ActionError(
                f"refused redirect from https to http: {redact.url(target)}"
            )

        method, content = request.method, request.content
        headers = httpx.Headers(request.headers)
        del headers["Host"]
        if (response.status_code == 303 and method != "HEAD") or (
            response.status_code in (301, 302) and method == "POST"
        ):
            method, content = "GET", b""
            for name in ("Content-Type", "Content-Length", "Transfer-Encoding"):
                headers.pop(name, None)
        else:
            headers.pop("Content-Length", None)
        if origin(target) != origin(request.url):
            dropped = [name for name in headers if is_sensitive_name(name)]
            for name in dropped:
                del headers[name]
            if dropped:
                names = ", ".join(sorted(dropped))
                ctx.info(f"redirect to another origin: not sending {names}")
        return httpx.Request(method, target, headers=headers, content=content or None)

    # ---------------------------------------------------------------- judging

    def _judge(
        self, inputs: HttpInputs, reply: _Reply, sink: OutputSink, redact: Redactor
    ) -> StepResult:
        response = reply.response
        self._log_response(inputs, reply, sink, redact)
        text = reply.body[:BODY_OUTPUT_CAP].decode(
            response.encoding or "utf-8", "replace"
        )
        document, parsed = _parse_json(inputs, reply)
        document = mask_tree(document, redact)
        outputs: dict[str, Any] = {
            "status": response.status_code,
            "reason": response.reason_phrase,
            "headers": redact.headers(response.headers),
            "url": redact.url(reply.url),
            "json": document if parsed and len(reply.body) <= BODY_OUTPUT_CAP else None,
            "body": redact(text),
        }
        if response.status_code not in inputs.expect_status:
            reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            return StepResult.fail(reason, outputs=outputs)

        for name, path in inputs.extract.items():
            if not parsed:
                return StepResult.fail(
                    f"extract {name}: the response is not JSON", outputs=outputs
                )
            try:
                outputs[name] = lookup(document, path)
            except ValueError as exc:
                return StepResult.fail(f"extract {name}: {exc}", outputs=outputs)
        return StepResult(passed=True, outputs=outputs)

    @staticmethod
    def _log_response(
        inputs: HttpInputs, reply: _Reply, sink: OutputSink, redact: Redactor
    ) -> None:
        response = reply.response
        version = response.extensions.get("http_version", b"HTTP/1.1")
        if isinstance(version, bytes):
            version = version.decode("ascii", "replace")
        lines = [f"< {version} {response.status_code} {response.reason_phrase}"]
        lines += [f"< {k}: {v}" for k, v in redact.headers(response.headers).items()]
        sink.write(("\n".join(lines) + "\n<\n").encode())

        shown = reply.body[: inputs.max_body_log]
        if shown:
            text = shown.decode(response.encoding or "utf-8", "replace")
            sink.write(redact(text).encode())
            if not text.endswith("\n"):
                sink.write(b"\n")
        if len(reply.body) > len(shown) or not reply.complete:
            total = response.headers.get("content-length")
            of = f"of {total} bytes" if total else "bytes; more followed"
            sink.write(f"[body truncated: {len(shown)} {of}]\n".encode())


def _query_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_json(inputs: HttpInputs, reply: _Reply) -> tuple[Any, bool]:
    content_type = reply.response.headers.get("content-type", "")
    if not reply.complete or not ("json" in content_type or inputs.extract):
        return None, False
    try:
        return json.loads(reply.body), True
    except ValueError:
        return None, False
