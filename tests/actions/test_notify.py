"""The ``notify`` action against the loopback webhook sink and SMTP servers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from haloterm.config import NotifyChannel, Settings
from haloterm.plugins.base import ActionError, StepResult
from haloterm.plugins.notify import NotifyAction, NotifyInputs
from tests.actions.context import LocalContext
from tests.servers import (
    SMTP_USERS,
    LoopbackCA,
    LoopbackHttpServer,
    LoopbackSmtpServer,
    closed_port,
)

SECRET = "S3cr3t!pw"

MakeCtx = Callable[..., LocalContext]


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[MakeCtx]:
    """Contexts with the given notify channels (and secrets); outputs closed after."""
    made: list[LocalContext] = []

    def make(
        channels: dict[str, dict[str, Any]] | None = None,
        secrets: dict[str, str] | None = None,
    ) -> LocalContext:
        spool = tmp_path / f"ctx-{len(made)}"
        spool.mkdir()
        ctx = LocalContext(spool, secrets=secrets)
        notify = {k: NotifyChannel(**v) for k, v in (channels or {}).items()}
        ctx.config = Settings(notify=notify)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        if not ctx.summaries:
            ctx.finish()


async def notify(ctx: LocalContext, **with_: Any) -> StepResult:
    inputs = NotifyInputs.model_validate(with_)
    return await NotifyAction().run(inputs, ctx)


# -------------------------------------------------------------- webhook shapes


async def test_slack_gets_escaped_text(
    make_ctx: MakeCtx, http_server: LoopbackHttpServer
) -> None:
    ctx = make_ctx({"noc": {"type": "slack", "url": http_server.url("/hook/slack")}})

    result = await notify(
        ctx,
        channel="noc",
        title="Restart done",
        message="nginx restarted <!channel> & <http://evil.example|click>",
        severity="warning",
    )

    assert result.passed
    assert result.outputs == {"channel": "noc", "type": "slack", "http_status": 200}
    [posted] = http_server.received
    assert posted.path == "/hook/slack"
    assert posted.headers["content-type"] == "application/json"
    assert posted.json() == {
        "text": "WARNING: *Restart done*\nnginx restarted &lt;!channel&gt; &amp; "
        "&lt;http://evil.example|click&gt;"
    }


async def test_mattermost_gets_markdown_text(
    make_ctx: MakeCtx, http_server: LoopbackHttpServer
) -> None:
    ctx = make_ctx({"mm": {"type": "mattermost", "url": http_server.url("/hook/mm")}})

    await notify(ctx, channel="mm", title="Backup", message="done")

    assert http_server.received[0].json() == {"text": "**Backup**\ndone"}


async def test_teams_gets_an_adaptive_card(
    make_ctx: MakeCtx, http_server: LoopbackHttpServer
) -> None:
    ctx = make_ctx({"t": {"type": "teams", "url": http_server.url("/hook/teams")}})

    await notify(ctx, channel="t", title="DB", message="lag 40 s", severity="error")

    payload = http_server.received[0].json()
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert [block["text"] for block in card["body"]] == ["DB", "lag 40 s"]
    assert card["body"][0]["color"] == "Attention"


async def test_generic_webhook_gets_the_run_context(
    make_ctx: MakeCtx, http_server: LoopbackHttpServer
) -> None:
    ctx = make_ctx({"hook": {"type": "webhook", "url": http_server.url("/hook")}})

    await notify(ctx, channel="hook", message="hello")

    assert http_server.received[0].json() == {
        "title": None,
        "message": "hello",
        "severity": "info",
        "execution_id": 1,
        "runbook": "test-runbook",
        "step": "step",
    }


async def test_message_and_title_are_masked_before_sending(
    make_ctx: MakeCtx, http_server: LoopbackHttpServer
) -> None:
    ctx = make_ctx(
        {"hook": {"type": "webhook", "url": http_server.url("/hook")}},
        secrets={"db": SECRET},
    )

    await notify(ctx, channel="hook", title=f"pw {SECRET}", message=f"pw={SECRET}")

    posted = http_server.received[0]
    assert SECRET.encode() not in posted.body
    assert posted.json()["message"] == "pw=******"
    assert posted.json()["title"] == "pw ******"


# ------------------------------------------------------------ webhook failures


async def test_a_failing_secret_url_is_never_shown(
    make_ctx: MakeCtx,
    http_server: LoopbackHttpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = http_server.url("/hook/T0001/B0002/XyZsecretPart?status=500")
    ctx = make_ctx(
        {"noc": {"type": "slack", "url_secret": "slack_url"}},
        secrets={"slack_url": url},
    )

    with pytest.raises(ActionError) as caught:
        await notify(ctx, channel="noc", message="hi")

    assert caught.value.reason == "notify noc (slack): HTTP 500 Internal Server Error"
    assert caught.value.__context__ is None
    assert len(http_server.received) == 1
    assert "XyZsecretPart" not in caplog.text
    assert "XyZsecretPart" not in "\n".join(ctx.lines("info"))


async def test_webhooks_go_through_the_environment_proxy(
    make_ctx: MakeCtx,
    http_server: LoopbackHttpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1")  # not used for http
    monkeypatch.setenv("HTTP_PROXY", http_server.origin)
    url = "http://hooks.chat.invalid/hook/services/T1"
    ctx = make_ctx({"noc": {"type": "slack", "url": url}})

    await notify(ctx, channel="noc", message="via proxy")

    [posted] = http_server.received
    assert posted.headers["x-proxied-target"] == url
    assert posted.json() == {"text": "via proxy"}


async def test_connection_refused_names_the_channel(make_ctx: MakeCtx) -> None:
    port = closed_port()
    ctx = make_ctx(
        {"hook": {"type": "webhook", "url": f"http://127.0.0.1:{port}/x?token=t0k"}}
    )

    with pytest.raises(ActionError) as caught:
        await notify(ctx, channel="hook", message="hi")

    reason = caught.value.reason
    assert reason == f"notify hook (webhook): connection refused: 127.0.0.1:{port}"


async def test_a_channel_without_a_url_is_a_clear_error(make_ctx: MakeCtx) -> None:
    ctx = make_ctx({"hook": {"type": "webhook"}})

    with pytest.raises(ActionError, match="has no url or url_secret"):
        await notify(ctx, channel="hook", message="hi")


async def test_unknown_channels_and_types_are_errors(
    make_ctx: MakeCtx, http_server: LoopbackHttpServer
) -> None:
    ctx = make_ctx({"odd": {"type": "pager", "url": http_server.url("/hook")}})

    with pytest.raises(ActionError, match="unknown channel 'nope'"):
        await notify(ctx, channel="nope", message="hi")
    with pytest.raises(ActionError, match="unknown channel type 'pager'"):
        await notify(ctx, channel="odd", message="hi")
    assert http_server.received == []


# --------------------------------------------------------------------- console


async def test_console_channel_toasts_every_console(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(secrets={"db": SECRET})

    result = await notify(
        ctx,
        channel="console",
        title="[bold]x",
        message=f"pw {SECRET}",
        severity="warning",
    )

    assert result.passed
    assert ctx.notices == [("[bold]x\npw ******", "warning")]


# ----------------------------------------------------------------------- email


def _mail_channel(server: LoopbackSmtpServer, **extra: Any) -> dict[str, Any]:
    return {
        "type": "email",
        "to": ["oncall@example.com"],
        "sender": "haloterm@example.com",
        "smtp_host": server.host,
        "smtp_port": server.port,
        **extra,
    }


async def test_plain_email_is_delivered(
    make_ctx: MakeCtx, smtp_server: LoopbackSmtpServer
) -> None:
    ctx = make_ctx({"ops": _mail_channel(smtp_server, starttls=False)})

    result = await notify(ctx, channel="ops", title="Nightly", message="all good")

    assert result.outputs["recipients"] == ["oncall@example.com"]
    [mail] = smtp_server.inbox
    assert (mail.mail_from, mail.rcpt_tos) == (
        "haloterm@example.com",
        ["oncall@example.com"],
    )
    message = mail.message()
    assert message["Subject"] == "Nightly"
    assert message["To"] == "oncall@example.com"
    assert message["X-Haloterm-Execution"] == "1"
    assert message.get_content().splitlines() == ["all good"]
    assert not mail.tls


async def test_starttls_and_login_with_a_trusted_certificate(
    make_ctx: MakeCtx,
    smtp_tls_server: LoopbackSmtpServer,
    tls_ca: LoopbackCA,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca.ca_file))
    channel = _mail_channel(
        smtp_tls_server, smtp_user="haloterm", smtp_password_secret="smtp"
    )
    ctx = make_ctx({"ops": channel}, secrets={"smtp": SMTP_USERS["haloterm"]})

    await notify(ctx, channel="ops", message="over TLS", severity="error")

    [mail] = smtp_tls_server.inbox
    assert mail.tls
    assert mail.login == "haloterm"
    assert mail.message()["Subject"] == "ERROR: [haloterm] test-runbook: error"


async def test_starttls_to_an_untrusted_certificate_fails(
    make_ctx: MakeCtx, smtp_tls_server: LoopbackSmtpServer
) -> None:
    ctx = make_ctx({"ops": _mail_channel(smtp_tls_server)})

    with pytest.raises(ActionError) as caught:
        await notify(ctx, channel="ops", message="x")

    assert caught.value.reason.startswith(
        "notify ops (email): TLS certificate not trusted: "
        f"127.0.0.1:{smtp_tls_server.port}"
    )
    assert smtp_tls_server.inbox == []


async def test_a_wrong_password_is_reported_without_it(
    make_ctx: MakeCtx,
    smtp_tls_server: LoopbackSmtpServer,
    tls_ca: LoopbackCA,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca.ca_file))
    channel = _mail_channel(
        smtp_tls_server, smtp_user="haloterm", smtp_password_secret="smtp"
    )
    ctx = make_ctx({"ops": channel}, secrets={"smtp": "wrong-password-1"})

    with pytest.raises(ActionError) as caught:
        await notify(ctx, channel="ops", message="x")

    assert caught.value.reason == "notify ops (email): SMTP login refused (535)"
    assert set(smtp_tls_server.failed_logins) == {"haloterm"}  # one per mechanism


async def test_a_password_is_never_sent_without_tls(
    make_ctx: MakeCtx, smtp_server: LoopbackSmtpServer
) -> None:
    channel = _mail_channel(
        smtp_server, starttls=False, smtp_user="u", smtp_password_secret="smtp"
    )
    ctx = make_ctx({"ops": channel}, secrets={"smtp": "pw-123"})

    with pytest.raises(ActionError, match="refusing to send the SMTP password"):
        await notify(ctx, channel="ops", message="x")
    assert smtp_server.inbox == []


async def test_email_address_channel_uses_the_email_settings(
    make_ctx: MakeCtx, smtp_server: LoopbackSmtpServer
) -> None:
    ctx = make_ctx({"email": _mail_channel(smtp_server, starttls=False)})

    result = await notify(
        ctx,
        channel="email:ann.lee@example.com",
        title="Welcome\r\nBcc: evil@example.net",
        message="Your accounts are ready.",
    )

    assert result.outputs["recipients"] == ["ann.lee@example.com"]
    [mail] = smtp_server.inbox
    assert mail.rcpt_tos == ["ann.lee@example.com"]
    message = mail.message()
    assert message["Subject"] == "Welcome Bcc: evil@example.net"
    assert message["Bcc"] is None


async def test_email_address_channel_needs_a_real_address_and_settings(
    make_ctx: MakeCtx, smtp_server: LoopbackSmtpServer
) -> None:
    bare = make_ctx()
    configured = make_ctx({"email": _mail_channel(smtp_server, starttls=False)})

    with pytest.raises(ActionError, match='needs a channel named "email"'):
        await notify(bare, channel="email:a@example.com", message="x")
    for address in ("nobody", "a@b@example.com", "a@example.com, b@example.com"):
        with pytest.raises(ActionError, match="not an email address"):
            await notify(configured, channel=f"email:{address}", message="x")
    assert smtp_server.inbox == []


def test_static_check_of_a_literal_email_channel() -> None:
    check = NotifyAction().static_check

    assert check({"channel": "email:{{ params.email }}"}) == []
    assert check({"channel": "email:ann@example.com"}) == []
    assert check({"channel": "noc"}) == []
    assert check({"channel": "email:ann"}) == [
        ("channel", "not an email address: 'ann'")
    ]
