"""A real HTTP server on 127.0.0.1 for tests: a small Starlette app under uvicorn.

The server runs in a background thread with its own event loop, on a port the kernel
picks, so it serves tests whatever loop they run in. Routes:

* ``/status/{code}``: answers with that status (any method).
* ``/json``: a fixed JSON document (:data:`SAMPLE_JSON`).
* ``/echo``: the request as JSON: ``method``, ``path``, ``query``, ``headers``
  (lower-case names), ``body`` (text).
* ``/redirect?to=<url>&status=302``: a redirect to ``to`` (absolute or relative).
* ``/loop``: a redirect to itself, forever.
* ``/slow?chunks=10&interval=0.1``: headers at once, then one chunk per interval.
* ``/sleep?seconds=1``: waits before answering.
* ``/big?size=<bytes>``: a plain-text body of that many bytes.
* ``/hook`` and ``/hook/<any path>``: a webhook sink; every request is recorded in
  :attr:`LoopbackHttpServer.received` before the answer (``?status=500`` to fail).

The server also plays a forward proxy for plain HTTP: a request for an absolute URL
(``GET http://elsewhere.invalid/echo``, as clients send to a proxy) is served by the
route of its path, with an ``x-proxied-target`` header naming the URL asked for.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from tests.servers.tls import LoopbackCA

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

SAMPLE_JSON: dict[str, Any] = {
    "data": {
        "items": [{"id": 7, "name": "first"}, {"id": 9, "name": "second"}],
        "total": 2,
        "dotted.key": "yes",
    },
    "ok": True,
}
"""What ``/json`` answers."""


@dataclass(frozen=True)
class Received:
    """One request the webhook sink recorded."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def _int(request: Request, name: str, default: int) -> int:
    return int(request.query_params.get(name, default))


def _float(request: Request, name: str, default: float) -> float:
    return float(request.query_params.get(name, default))


class _ForwardProxy:
    """ASGI middleware: serve absolute-form requests (sent to a proxy) locally."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(("http://", "https://")):
            local = urlsplit(path).path or "/"
            headers = [*scope["headers"], (b"x-proxied-target", path.encode())]
            scope = {
                **scope,
                "path": local,
                "raw_path": local.encode(),
                "headers": headers,
            }
        await self.app(scope, receive, send)


def make_app(received: list[Received]) -> ASGIApp:
    """The test application; webhook requests are appended to ``received``."""

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        return PlainTextResponse(f"status {code}\n", status_code=code)

    async def sample(request: Request) -> Response:
        return JSONResponse(SAMPLE_JSON)

    async def echo(request: Request) -> Response:
        body = await request.body()
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
        )

    async def redirect(request: Request) -> Response:
        code = _int(request, "status", 302)
        return Response(
            status_code=code, headers={"location": request.query_params["to"]}
        )

    async def loop(request: Request) -> Response:
        return Response(status_code=302, headers={"location": "/loop"})

    async def slow(request: Request) -> Response:
        chunks = _int(request, "chunks", 10)
        interval = _float(request, "interval", 0.1)

        async def trickle() -> AsyncIterator[bytes]:
            for n in range(chunks):
                yield f"chunk {n}\n".encode()
                await asyncio.sleep(interval)

        return StreamingResponse(trickle(), media_type="text/plain")

    async def sleep(request: Request) -> Response:
        await asyncio.sleep(_float(request, "seconds", 1.0))
        return PlainTextResponse("slept\n")

    async def big(request: Request) -> Response:
        size = _int(request, "size", 1 << 20)
        line = b"0123456789abcdef" * 4 + b"\n"
        body = (line * (size // len(line) + 1))[:size]
        return Response(body, media_type="text/plain")

    async def hook(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = await request.body()
        received.append(Received(request.method, request.url.path, headers, body))
        return PlainTextResponse("ok", status_code=_int(request, "status", 200))

    app = Starlette(
        routes=[
            Route("/status/{code:int}", status, methods=ALL_METHODS),
            Route("/json", sample),
            Route("/echo", echo, methods=ALL_METHODS),
            Route("/redirect", redirect, methods=ALL_METHODS),
            Route("/loop", loop, methods=ALL_METHODS),
            Route("/slow", slow),
            Route("/sleep", sleep),
            Route("/big", big),
            Route("/hook", hook, methods=["POST", "PUT"]),
            Route("/hook/{name:path}", hook, methods=["POST", "PUT"]),
        ]
    )
    return _ForwardProxy(app)


class LoopbackHttpServer:
    """The test app served by uvicorn on ``127.0.0.1:<free port>`` in a thread.

    Attributes:
        received: requests the webhook sink recorded, oldest first.
        port: the port, known once started.
    """

    def __init__(self, tls: LoopbackCA | None = None) -> None:
        self.received: list[Received] = []
        self.port = 0
        self._tls = tls
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>`` (``https`` when serving TLS)."""
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """An absolute URL on this server."""
        return self.origin + path

    def start(self, timeout: float = 10.0) -> None:
        """Bind, start serving and return once the server accepts requests."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            make_app(self.received),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=1,
            ssl_certfile=str(self._tls.cert_file) if self._tls else None,
            ssl_keyfile=str(self._tls.key_file) if self._tls else None,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        limit = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > limit:
                self.stop()
                sock.close()
                raise RuntimeError("the loopback HTTP server did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                raise RuntimeError("the loopback HTTP server did not stop")
        self._server = self._thread = None


@contextmanager
def serve_http(tls: LoopbackCA | None = None) -> Iterator[LoopbackHttpServer]:
    """Run a :class:`LoopbackHttpServer` for the length of a ``with`` block."""
    server = LoopbackHttpServer(tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()
