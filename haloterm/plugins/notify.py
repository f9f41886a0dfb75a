"""The ``notify`` action: tell people something, through a channel named in config.

A channel is a name from the ``[notify]`` table of the config file, ``email:<address>``
(the server settings of the channel named ``email``, with that one recipient), or
``console`` (a toast in every open console). Chat and webhook channels take a
``url``, or a ``url_secret`` when the URL is itself a credential, as Slack's are.

Every text is masked before it leaves, and no failure reason carries a webhook URL.
"""

from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, ClassVar, Literal

import httpx

from haloterm.config import NotifyChannel
from haloterm.plugins.base import (
    Action,
    ActionContext,
    ActionError,
    ActionInputs,
    StepResult,
)
from haloterm.plugins.http import post_json, proxy_for, transport_failure

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 30.0
"""Seconds one delivery may take (webhook exchange, SMTP conversation)."""
_ADDRESS = re.compile(
    r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\]+"
)
_TEAMS_COLOURS = {"info": "Default", "warning": "Warning", "error": "Attention"}
_CONSOLE_SEVERITY = {"info": "information", "warning": "warning", "error": "error"}

Severity = Literal["info", "warning", "error"]


class NotifyInputs(ActionInputs):
    """The ``with`` block of a ``notify`` step."""

    channel: str
    """A channel name from config, ``email:<address>`` or ``console``."""
    message: str
    """The text to send."""
    title: str | None = None
    """A heading, and the email subject."""
    severity: Severity = "info"
    """``info``, ``warning`` or ``error``."""


class _Text:
    """The masked message as each channel shapes it."""

    def __init__(self, inputs: NotifyInputs, ctx: ActionContext) -> None:
        self.message = ctx.mask(inputs.message)
        self.title = ctx.mask(inputs.title) if inputs.title else None
        self.severity: Severity = inputs.severity
        self.ctx = ctx

    def plain(self) -> str:
        head = f"{self.title}\n" if self.title else ""
        return head + self.message

    def prefix(self) -> str:
        return "" if self.severity == "info" else f"{self.severity.upper()}: "


def resolve_channel(spec: str, config: Any) -> tuple[str, NotifyChannel]:
    """Find the channel a step names.

    Args:
        spec: ``console``, ``email:<address>`` or a name from ``config.notify``.
        config: haloterm's settings (anything with a ``notify`` mapping).

    Returns:
        The name to report, and the channel's settings (for ``email:<address>``, the
        ``email`` channel's settings with that one recipient).

    Raises:
        ActionError: no such channel, or the address is not one.
    """
    channels: dict[str, NotifyChannel] = dict(getattr(config, "notify", None) or {})
    if spec in channels:
        return spec, channels[spec]
    if spec == "console":
        return spec, NotifyChannel(type="console")
    if spec.startswith("email:"):
        address = spec.removeprefix("email:").strip()
        if not _ADDRESS.fullmatch(address):
            raise ActionError(f"notify: not an email address: {address!r}")
        base = channels.get("email")
        if base is None or base.type != "email":
            raise ActionError(
                'notify: "email:<address>" needs a channel named "email" of type email'
            )
        return "email", base.model_copy(update={"to": [address]})
    raise ActionError(f"notify: unknown channel {spec!r}")


class NotifyAction(Action):
    """Send a message to a chat webhook, a generic webhook, email or the consoles.

    Outputs: ``channel`` (the channel's name) and ``type`` (its kind); webhook
    deliveries add ``http_status``, email deliveries ``recipients``.
    """

    name: ClassVar[str] = "notify"
    Inputs: ClassVar[type[ActionInputs]] = NotifyInputs
    description: ClassVar[str] = "Send a message to a chat, webhook, email or consoles"

    def static_check(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        """A literal ``email:<address>`` channel must name one valid address."""
        channel = inputs.get("channel")
        if isinstance(channel, str) and channel.startswith("email:"):
            address = channel.removeprefix("email:").strip()
            if "{{" not in address and not _ADDRESS.fullmatch(address):
                return [("channel", f"not an email address: {address!r}")]
        return []

    async def run(self, inputs: Any, ctx: ActionContext) -> StepResult:
        """Deliver the message once.

        Raises:
            ActionError: the channel is unknown or misconfigured, or delivery failed;
                the reason names the channel and the status or error, masked.
        """
        assert isinstance(inputs, NotifyInputs)
        name, channel = resolve_channel(inputs.channel, ctx.config)
        text = _Text(inputs, ctx)
        outputs: dict[str, Any] = {"channel": name, "type": channel.type}
        if channel.type == "console":
            ctx.notify_consoles(text.plain(), _CONSOLE_SEVERITY[text.severity])
        elif channel.type == "email":
            outputs["recipients"] = await self._email(name, channel, text, ctx)
        else:
            payload = self._payload(name, channel, text)
            outputs["http_status"] = await self._post(name, channel, payload, ctx)
        ctx.info(f"notified {name} ({channel.type})")
        return StepResult(passed=True, outputs=outputs)

    # --------------------------------------------------------------- webhooks

    def _payload(self, name: str, channel: NotifyChannel, text: _Text) -> Any:
        shape = _SHAPES.get(channel.type)
        if shape is None:
            raise ActionError(f"notify {name}: unknown channel type {channel.type!r}")
        return shape(text)

    async def _post(
        self, name: str, channel: NotifyChannel, payload: Any, ctx: ActionContext
    ) -> int:
        url = channel.url
        if channel.url_secret:
            url = ctx.secret(channel.url_secret)
        if not url:
            raise ActionError(f"notify {name}: the channel has no url or url_secret")
        failure: str | None = None
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                status, phrase, answer = await post_json(url, payload)
        except TimeoutError:
            failure = "timeout"
        except httpx.InvalidURL:
            failure = "invalid webhook URL"
        except httpx.TransportError as exc:
            target = httpx.URL(url)
            failure = transport_failure(exc, target, proxy_for(target))
        # Raised outside the handlers so that the httpx exception (and the URL it
        # holds) is not chained to the reason.
        if failure is not None:
            raise ActionError(ctx.mask(f"notify {name} ({channel.type}): {failure}"))
        if not 200 <= status < 300:
            detail = f"HTTP {status} {phrase}".strip()
            ctx.log.info("notify %s answered %s: %s", name, status, ctx.mask(answer))
            raise ActionError(ctx.mask(f"notify {name} ({channel.type}): {detail}"))
        return status

    # ------------------------------------------------------------------ email

    async def _email(
        self, name: str, channel: NotifyChannel, text: _Text, ctx: ActionContext
    ) -> list[str]:
        if not channel.to:
            raise ActionError(f"notify {name}: the email channel has no recipients")
        if not channel.smtp_host:
            raise ActionError(f"notify {name}: the email channel has no smtp_host")
        password = None
        if channel.smtp_password_secret:
            password = ctx.secret(channel.smtp_password_secret)
            if not (channel.starttls or channel.smtp_port == 465):
                raise ActionError(
                    f"notify {name}: refusing to send the SMTP password without TLS "
                    "(set starttls = true)"
                )
        message = self._message(channel, text, ctx)
        failure: str | None = None
        try:
            # smtplib blocks; the thread cannot be stopped once it runs, so a
            # cancelled step may still deliver the mail.
            ctx.cancel_note = "the email may still be delivered"
            await asyncio.to_thread(_send_mail, channel, message, password)
        except (smtplib.SMTPException, OSError) as exc:
            failure = _smtp_failure(exc, channel)
        ctx.cancel_note = None
        if failure is not None:
            if password:
                failure = failure.replace(password, "******")
            raise ActionError(ctx.mask(f"notify {name} (email): {failure}"))
        return list(channel.to)

    @staticmethod
    def _message(
        channel: NotifyChannel, text: _Text, ctx: ActionContext
    ) -> EmailMessage:
        # gethostname, not getfqdn: no DNS lookup on the event loop.
        sender = channel.sender or f"haloterm@{socket.gethostname()}"
        subject = text.title or f"[haloterm] {ctx.runbook}: {text.severity}"
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(channel.to)
        # A header may not carry line breaks (header injection); fold them away.
        message["Subject"] = " ".join((text.prefix() + subject).split())
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        message["X-Haloterm-Execution"] = str(ctx.execution_id)
        message.set_content(text.message + "\n")
        return message


def _send_mail(
    channel: NotifyChannel, message: EmailMessage, password: str | None
) -> None:
    host, port = channel.smtp_host or "", channel.smtp_port
    context = ssl.create_default_context()
    if port == 465:
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host, port, timeout=SEND_TIMEOUT, context=context
        )
    else:
        client = smtplib.SMTP(host, port, timeout=SEND_TIMEOUT)
    with client:
        if port != 465 and channel.starttls:
            client.starttls(context=context)
        if password is not None:
            client.login(channel.smtp_user or "", password)
        client.send_message(message)


def _smtp_failure(exc: BaseException, channel: NotifyChannel) -> str:
    where = f"{channel.smtp_host}:{channel.smtp_port}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"{where} does not offer STARTTLS"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"SMTP login refused ({exc.smtp_code})"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"recipients refused: {', '.join(sorted(exc.recipients))}"
    if isinstance(exc, smtplib.SMTPResponseException):
        message = exc.smtp_error
        detail = (
            message.decode("utf-8", "replace")
            if isinstance(message, bytes)
            else message
        )
        return f"SMTP {exc.smtp_code} {detail}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {where} ({exc.verify_message})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: {where}"
    if isinstance(exc, TimeoutError):
        return f"timeout: {where}"
    return f"{type(exc).__name__}: {where} ({exc})"


# ------------------------------------------------------------------ payload shapes


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions (<!channel>); these three are its escapes.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(text: _Text) -> dict[str, Any]:
    head = f"*{_slack_escape(text.title)}*\n" if text.title else ""
    return {"text": text.prefix() + head + _slack_escape(text.message)}


def _mattermost(text: _Text) -> dict[str, Any]:
    head = f"**{text.title}**\n" if text.title else ""
    return {"text": text.prefix() + head + text.message}


def _teams(text: _Text) -> dict[str, Any]:
    body: list[dict[str, Any]] = []
    if text.title:
        body.append(
            {
                "type": "TextBlock",
                "text": text.title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                "color": _TEAMS_COLOURS[text.severity],
            }
        )
    body.append({"type": "TextBlock", "text": text.message, "wrap": True})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}


def _webhook(text: _Text) -> dict[str, Any]:
    ctx = text.ctx
    return {
        "title": text.title,
        "message": text.message,
        "severity": text.severity,
        "execution_id": ctx.execution_id,
        "runbook": ctx.runbook,
        "step": ctx.step_id,
    }


_SHAPES: dict[str, Callable[[_Text], Any]] = {
    "slack": _slack,
    "mattermost": _mattermost,
    "teams": _teams,
    "webhook": _webhook,
}
