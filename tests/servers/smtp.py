"""A real SMTP server on 127.0.0.1 for tests: aiosmtpd with a recording handler.

:class:`LoopbackSmtpServer` serves plain SMTP, or, given a :class:`LoopbackCA`, offers
STARTTLS, requires it before mail, and accepts ``AUTH PLAIN``/``LOGIN`` for the users
it was given (only over TLS).
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

if TYPE_CHECKING:
    from tests.servers.tls import LoopbackCA


class _LegacyNoticeFilter(logging.Filter):
    """Drops aiosmtpd's own notice about an attribute it sets itself on every AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_LegacyNoticeFilter())


@dataclass(frozen=True)
class ReceivedMail:
    """One message the server accepted.

    Attributes:
        mail_from: the envelope sender.
        rcpt_tos: the envelope recipients.
        content: the message as sent, bytes.
        tls: whether the session had switched to TLS.
        login: the user the session authenticated as, or None.
    """

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    login: str | None

    def message(self) -> email.message.EmailMessage:
        """The content parsed as an email message."""
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


class _Recorder:
    def __init__(self, inbox: list[ReceivedMail]) -> None:
        self.inbox = inbox

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        login = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode()
        content = envelope.original_content or b""
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            content=content,
            tls=session.ssl is not None,
            login=login,
        )
        self.inbox.append(mail)
        return "250 Message accepted"


class _AnyPortController(Controller):
    """A Controller that binds port 0 and learns the port the kernel picked."""

    def _create_server(self) -> Any:
        async def create() -> asyncio.AbstractServer:
            server = await self.loop.create_server(
                self._factory_invoker,
                host=self.hostname,
                port=0,
                ssl=self.ssl_context,
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return create()


class LoopbackSmtpServer:
    """aiosmtpd on ``127.0.0.1:<free port>`` in its own thread.

    Attributes:
        inbox: messages accepted, oldest first.
        users: user name -> password accepted by ``AUTH`` (TLS servers only).
    """

    def __init__(
        self, tls: LoopbackCA | None = None, users: dict[str, str] | None = None
    ) -> None:
        self.inbox: list[ReceivedMail] = []
        self.users = dict(users or {})
        self.failed_logins: list[str] = []
        kwargs: dict[str, Any] = {}
        if tls is not None:
            kwargs.update(
                tls_context=tls.server_context(),
                require_starttls=True,
                auth_require_tls=True,
                authenticator=self._authenticate,
            )
        self._controller = _AnyPortController(
            _Recorder(self.inbox), hostname="127.0.0.1", port=0, **kwargs
        )

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode()
            if self.users.get(user) == auth_data.password.decode():
                return AuthResult(success=True, auth_data=auth_data)
            self.failed_logins.append(user)
        return AuthResult(success=False, handled=False)

    def start(self) -> None:
        """Start serving; returns once the server answers."""
        self._controller.start()

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._controller.stop()


@contextmanager
def serve_smtp(
    tls: LoopbackCA | None = None, users: dict[str, str] | None = None
) -> Iterator[LoopbackSmtpServer]:
    """Run a :class:`LoopbackSmtpServer` for the length of a ``with`` block."""
    server = LoopbackSmtpServer(tls, users)
    server.start()
    try:
        yield server
    finally:
        server.stop()
