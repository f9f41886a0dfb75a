"""Loopback test servers (HTTP under uvicorn, SMTP under aiosmtpd) and their fixtures.

The fixtures are registered for every test by ``tests/conftest.py``; ask for them by
name (``def test_x(http_server): ...``). The HTTP servers are shared by the whole
session: each test gets them with an empty webhook sink. Outside pytest, or for more
instances, use :func:`serve_http` / :func:`serve_smtp` as context managers.

* ``http_server``, ``http_server_b``: two plain HTTP servers (two origins) running the
  app described in :mod:`tests.servers.http`; ``server.url("/json")``,
  ``server.received`` (the webhook sink's records).
* ``tls_ca``: a CA and a server certificate for 127.0.0.1/localhost (one per session).
* ``https_server``: the same app over TLS with ``tls_ca``'s certificate (not trusted
  unless the client trusts ``tls_ca.ca_file``, for instance via ``SSL_CERT_FILE``).
* ``smtp_server``: plain SMTP, no auth; ``server.inbox``.
* ``smtp_tls_server``: STARTTLS required, ``AUTH`` over TLS for the users in
  :data:`SMTP_USERS`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.servers.http import LoopbackHttpServer, Received, serve_http
from tests.servers.smtp import LoopbackSmtpServer, ReceivedMail, serve_smtp
from tests.servers.tls import LoopbackCA, make_test_ca


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting to it is
    refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


SMTP_USERS = {"haloterm": "smtp-pw-5up3r"}
"""Users ``smtp_tls_server`` accepts: name -> password."""

__all__ = [
    "closed_port",
    "SMTP_USERS",
    "LoopbackHttpServer",
    "LoopbackSmtpServer",
    "Received",
    "ReceivedMail",
    "LoopbackCA",
    "http_server",
    "http_server_b",
    "http_server_b_session",
    "http_server_session",
    "https_server",
    "https_server_session",
    "make_test_ca",
    "serve_http",
    "serve_smtp",
    "smtp_server",
    "smtp_tls_server",
    "tls_ca",
]


# The HTTP servers live for the whole session (starting and stopping uvicorn costs
# a fraction of a second); the per-test fixtures hand them out with an empty sink.


@pytest.fixture(scope="session")
def http_server_session() -> Iterator[LoopbackHttpServer]:
    with serve_http() as server:
        yield server


@pytest.fixture(scope="session")
def http_server_b_session() -> Iterator[LoopbackHttpServer]:
    with serve_http() as server:
        yield server


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    """A CA and a 127.0.0.1/localhost server certificate it signed."""
    return make_test_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def https_server_session(tls_ca: LoopbackCA) -> Iterator[LoopbackHttpServer]:
    with serve_http(tls=tls_ca) as server:
        yield server


@pytest.fixture
def http_server(http_server_session: LoopbackHttpServer) -> LoopbackHttpServer:
    """A plain HTTP test server on 127.0.0.1 (its webhook sink emptied)."""
    http_server_session.received.clear()
    return http_server_session


@pytest.fixture
def http_server_b(http_server_b_session: LoopbackHttpServer) -> LoopbackHttpServer:
    """A second plain HTTP test server: another origin (another port)."""
    http_server_b_session.received.clear()
    return http_server_b_session


@pytest.fixture
def https_server(https_server_session: LoopbackHttpServer) -> LoopbackHttpServer:
    """The HTTP test app over TLS, with a certificate from ``tls_ca``."""
    https_server_session.received.clear()
    return https_server_session


@pytest.fixture
def smtp_server() -> Iterator[LoopbackSmtpServer]:
    """A plain SMTP server that records what it accepts."""
    with serve_smtp() as server:
        yield server


@pytest.fixture
def smtp_tls_server(tls_ca: LoopbackCA) -> Iterator[LoopbackSmtpServer]:
    """An SMTP server that requires STARTTLS and accepts :data:`SMTP_USERS`."""
    with serve_smtp(tls=tls_ca, users=SMTP_USERS) as server:
        yield server
