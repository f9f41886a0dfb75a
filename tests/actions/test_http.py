"""The ``http`` action against real loopback servers (see ``tests/servers``)."""

from __future__ import annotations

import asyncio
import base64
import logging
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from pydantic import ValidationError

from haloterm.config import NotifyChannel, Settings
from haloterm.loader import LoadError, load_runbook_text
from haloterm.plugins.base import ActionError, StepResult
from haloterm.plugins.http import (
    USE_A_SECRET,
    HttpAction,
    HttpInputs,
    lookup,
    parse_path,
)
from haloterm.services import Services
from tests.actions.context import LocalContext
from tests.identity import with_harness
from tests.servers import LoopbackCA, LoopbackHttpServer, closed_port

SECRET = "S3cr3t!pw"


def log_of(ctx: LocalContext, stream: str = "stdout") -> str:
    """Everything the step logged on one stream (closes the outputs first)."""
    if not ctx.summaries:
        ctx.finish()
    return "\n".join(ctx.lines(stream))


MakeCtx = Callable[..., LocalContext]


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[MakeCtx]:
    """Build contexts (``secrets=``, attributes to set); their outputs close after."""
    made: list[LocalContext] = []

    def make(secrets: dict[str, str] | None = None, **attrs: Any) -> LocalContext:
        spool = tmp_path / f"ctx-{len(made)}"
        spool.mkdir()
        ctx = LocalContext(spool, secrets=secrets)
        for name, value in attrs.items():
            setattr(ctx, name, value)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        if not ctx.summaries:
            ctx.finish()


async def run(ctx: LocalContext, **with_: Any) -> StepResult:
    inputs = HttpInputs.model_validate(with_)
    return await HttpAction().run(inputs, ctx)


@pytest.fixture
def ctx(make_ctx: MakeCtx) -> LocalContext:
    return make_ctx()


# ------------------------------------------------------------------- statuses


async def test_get_json_passes_with_outputs_and_log(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(ctx, url=http_server.url("/json"))

    assert result.passed, result.reason
    assert result.outputs["status"] == 200
    assert result.outputs["json"]["data"]["total"] == 2
    assert result.outputs["headers"]["content-type"] == "application/json"
    assert '"total":2' in result.outputs["body"]
    log = log_of(ctx)
    assert f"> GET {http_server.url('/json')}" in log
    assert "< HTTP/1.1 200 OK" in log
    assert "< content-type: application/json" in log
    assert '"first"' in log


async def test_unexpected_status_fails_with_code_and_phrase(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(ctx, url=http_server.url("/status/503"))

    assert not result.passed
    assert result.reason == "HTTP 503 Service Unavailable"
    assert result.outputs["status"] == 503
    assert result.outputs["body"] == "status 503\n"


async def test_expect_status_replaces_the_2xx_default(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    missing = await run(ctx, url=http_server.url("/status/404"), expect_status=[404])
    created = await run(ctx, url=http_server.url("/status/200"), expect_status=[201])

    assert missing.passed
    assert not created.passed
    assert created.reason == "HTTP 200 OK"


async def test_request_bodies_query_and_headers_reach_the_server(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    as_json = await run(
        ctx,
        method="post",
        url=http_server.url("/echo?a=1"),
        query={"b": 2, "flag": True},
        headers={"X-Trace": "t-1"},
        json={"profile": {"login": "ann"}},
    )
    as_form = await run(
        ctx, method="PUT", url=http_server.url("/echo"), form={"k": "v w"}
    )
    as_text = await run(
        ctx, method="PATCH", url=http_server.url("/echo"), body="plain text"
    )

    echo = as_json.outputs["json"]
    assert echo["method"] == "POST"
    assert echo["query"] == {"a": "1", "b": "2", "flag": "true"}
    assert echo["headers"]["x-trace"] == "t-1"
    assert echo["headers"]["content-type"] == "application/json"
    assert echo["body"] == '{"profile":{"login":"ann"}}'
    assert as_form.outputs["json"]["body"] == "k=v+w"
    assert as_text.outputs["json"]["body"] == "plain text"
    assert as_text.outputs["json"]["method"] == "PATCH"


async def test_json_null_is_a_body(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(ctx, method="POST", url=http_server.url("/echo"), json=None)

    assert result.outputs["json"]["body"] == "null"


async def test_head_and_no_content_responses_have_empty_bodies(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    head = await run(ctx, method="HEAD", url=http_server.url("/json"))
    empty = await run(ctx, method="DELETE", url=http_server.url("/status/204"))

    assert (head.passed, head.outputs["body"], head.outputs["json"]) == (True, "", None)
    assert head.outputs["headers"]["content-length"] == "108"
    assert (empty.passed, empty.outputs["status"], empty.outputs["body"]) == (
        True,
        204,
        "",
    )


async def test_max_body_log_zero_logs_no_body(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(ctx, url=http_server.url("/json"), max_body_log=0)

    log = log_of(ctx)
    assert result.outputs["json"]["ok"] is True
    assert '"first"' not in log
    assert "[body truncated: 0 of 108 bytes]" in log


# -------------------------------------------------------------------- extract


async def test_extract_reads_dotted_paths(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(
        ctx,
        url=http_server.url("/json"),
        extract={
            "first_id": "data.items[0].id",
            "last_name": "data.items[-1].name",
            "dotted": 'data["dotted.key"]',
            "ok": "$.ok",
            "items": "data.items",
        },
    )

    assert result.passed, result.reason
    assert result.outputs["first_id"] == 7
    assert result.outputs["last_name"] == "second"
    assert result.outputs["dotted"] == "yes"
    assert result.outputs["ok"] is True
    assert len(result.outputs["items"]) == 2


async def test_extract_of_a_missing_path_fails_and_says_where(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(
        ctx, url=http_server.url("/json"), extract={"x": "data.items[5].id"}
    )

    assert not result.passed
    assert result.reason == "extract x: $.data.items has no item 5 (length 2)"
    assert result.outputs["status"] == 200


async def test_extract_from_a_non_json_body_fails(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(ctx, url=http_server.url("/status/200"), extract={"x": "a"})

    assert not result.passed
    assert result.reason == "extract x: the response is not JSON"


def test_paths_parse_into_keys_and_indexes() -> None:
    assert parse_path("data.items[0].id") == ["data", "items", 0, "id"]
    assert parse_path("$.a['b.c'][-1]") == ["a", "b.c", -1]
    assert parse_path('$["x\\"y"]') == ['x"y']
    assert parse_path("$") == []
    with pytest.raises(ValueError, match="cannot read"):
        parse_path("a..b")
    with pytest.raises(ValueError, match="is not an object"):
        lookup({"a": [1]}, "a.b")


def test_inputs_are_checked() -> None:
    assert HttpInputs.model_validate({"url": "http://x", "method": "post"}).method == (
        "POST"
    )
    with pytest.raises(ValidationError, match="at most one of json, body, form"):
        HttpInputs.model_validate({"url": "http://x", "json": {}, "body": "b"})
    with pytest.raises(ValidationError, match="basic auth needs a username"):
        HttpInputs.model_validate(
            {"url": "http://x", "auth": {"type": "basic", "secret": "s"}}
        )
    with pytest.raises(ValidationError, match="reserved output name"):
        HttpInputs.model_validate({"url": "http://x", "extract": {"status": "a"}})
    with pytest.raises(ValidationError, match="cannot read"):
        HttpInputs.model_validate({"url": "http://x", "extract": {"v": "a[x]"}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        HttpInputs.model_validate({"url": "http://x", "verify": False})
    with pytest.raises(ValidationError):
        HttpInputs.model_validate({"url": "http://x", "method": "BREW"})


def test_static_check_refuses_bad_literal_urls_and_literal_credentials() -> None:
    check = HttpAction().static_check

    assert check({"url": "https://{{ params.host }}/x"}) == []
    assert check({"url": "https://app:{{ params.pw }}@h/x"}) == []
    assert (
        check({"url": "https://h/x", "headers": {"X-Api-Key": "{{ params.k }}"}}) == []
    )
    assert check({"url": "ftp://h/x"}) == [
        ("url", "must be an http:// or https:// URL with a host")
    ]
    assert [p for p, _ in check({"url": "https://app:hunter2@h/x"})] == ["url"]
    problems = check(
        {"url": "https://h", "headers": {"Authorization": "Bearer abc", "Accept": "x"}}
    )
    assert problems == [
        ("headers.Authorization", "a literal credential: " + USE_A_SECRET)
    ]


def test_the_loader_rejects_a_literal_password_in_a_url() -> None:
    text = textwrap.dedent(
        """
        name: literal-password
        steps:
          - id: call
            action: http
            with: {url: "https://app:hunter2@api.example.com/x"}
        """
    )

    with pytest.raises(
        LoadError, match=r"steps\[0\]\.with\.url: a password in the URL"
    ):
        load_runbook_text(text)


async def test_a_non_http_url_is_refused(ctx: LocalContext) -> None:
    with pytest.raises(ActionError, match="must be http:// or https://"):
        await run(ctx, url="file:///etc/passwd")


# ------------------------------------------------------------------- deadline


async def test_deadline_covers_a_slowly_trickling_body(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    """Each chunk arrives well within any per-read timeout; the whole does not."""
    started = time.monotonic()
    with pytest.raises(ActionError) as caught:
        await run(
            ctx,
            url=http_server.url("/slow?chunks=100&interval=0.05"),
            deadline="400ms",
        )

    assert caught.value.reason == "timeout"
    assert 0.35 < time.monotonic() - started < 2.0
    assert "! timeout" in log_of(ctx)


async def test_the_step_deadline_bounds_the_exchange(
    make_ctx: MakeCtx,
    http_server: LoopbackHttpServer,
) -> None:
    ctx = make_ctx(deadline=time.monotonic() + 0.3)
    started = time.monotonic()
    with pytest.raises(ActionError, match="^timeout$"):
        await run(ctx, url=http_server.url("/sleep?seconds=5"))

    assert time.monotonic() - started < 2.0


async def test_cancellation_propagates(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    task = asyncio.create_task(run(ctx, url=http_server.url("/sleep?seconds=5")))
    await asyncio.sleep(0.2)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_slow_body_within_the_deadline_passes(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(
        ctx, url=http_server.url("/slow?chunks=3&interval=0.05"), deadline="5s"
    )

    assert result.passed
    assert result.outputs["body"] == "chunk 0\nchunk 1\nchunk 2\n"


# ------------------------------------------------------------------ redirects


async def test_redirects_are_not_followed_by_default(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(ctx, url=http_server.url("/redirect?to=/json"))

    assert not result.passed
    assert result.reason == "HTTP 302 Found"
    assert result.outputs["headers"]["location"] == "/json"


async def test_same_origin_redirect_keeps_credentials(
    make_ctx: MakeCtx,
    http_server: LoopbackHttpServer,
) -> None:
    ctx = make_ctx(secrets={"api": "tok-same-origin"})
    server = http_server
    result = await run(
        ctx,
        url=server.url("/redirect?to=/echo"),
        headers={"X-Api-Key": "k-1", "Cookie": "sid=1"},
        auth={"type": "bearer", "secret": "api"},
        follow_redirects=True,
    )

    headers = result.outputs["json"]["headers"]
    assert result.passed
    # The echoed token comes back masked: the action masks the secrets it used.
    assert headers["authorization"] == "Bearer ******"
    assert headers["x-api-key"] == "******"
    assert headers["cookie"] == "******"
    assert result.outputs["url"] == server.url("/echo")


async def test_cross_origin_redirect_drops_credentials(
    make_ctx: MakeCtx,
    http_server: LoopbackHttpServer,
    http_server_b: LoopbackHttpServer,
) -> None:
    ctx = make_ctx(secrets={"api": "tok-cross-origin"})
    target = quote(http_server_b.url("/echo"), safe="")
    result = await run(
        ctx,
        url=http_server.url(f"/redirect?to={target}&status=307"),
        method="POST",
        body="payload",
        headers={
            "X-Api-Key": "k-1",
            "Cookie": "sid=1",
            "X-Auth-Token": "t-1",
            "X-Trace": "kept",
        },
        auth={"type": "bearer", "secret": "api"},
        follow_redirects=True,
    )

    echo = result.outputs["json"]
    assert result.passed, result.reason
    assert echo["method"] == "POST"
    assert echo["body"] == "payload"
    assert echo["headers"]["x-trace"] == "kept"
    for name in ("authorization", "x-api-key", "cookie", "x-auth-token"):
        assert name not in echo["headers"]
    assert any(
        "not sending" in line and "authorization" in line
        for line in log_of(ctx, "info").splitlines()
    )


async def test_userinfo_credentials_do_not_cross_origins(
    ctx: LocalContext,
    http_server: LoopbackHttpServer,
    http_server_b: LoopbackHttpServer,
) -> None:
    target = quote(http_server_b.url("/echo"), safe="")
    url = http_server.url(f"/redirect?to={target}").replace("//", "//app:pw-ui@", 1)
    result = await run(ctx, url=url, follow_redirects=True)

    assert result.passed
    assert "authorization" not in result.outputs["json"]["headers"]


async def test_303_turns_a_post_into_a_get(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(
        ctx,
        method="POST",
        url=http_server.url("/redirect?to=/echo&status=303"),
        json={"a": 1},
        follow_redirects=True,
    )

    echo = result.outputs["json"]
    assert (echo["method"], echo["body"]) == ("GET", "")
    assert "content-type" not in echo["headers"]


async def test_a_redirect_loop_stops_at_max_redirects(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    with pytest.raises(ActionError, match=r"too many redirects \(more than 2\)"):
        await run(
            ctx, url=http_server.url("/loop"), follow_redirects=True, max_redirects=2
        )

    assert log_of(ctx).count("> GET") == 3


async def test_https_to_http_redirect_is_refused_unless_allowed(
    ctx: LocalContext,
    https_server: LoopbackHttpServer,
    http_server: LoopbackHttpServer,
) -> None:
    target = quote(http_server.url("/json"), safe="")
    url = https_server.url(f"/redirect?to={target}")
    common: dict[str, Any] = {"url": url, "follow_redirects": True, "verify_tls": False}

    with pytest.raises(ActionError, match="refused redirect from https to http"):
        await run(ctx, **common)
    allowed = await run(ctx, allow_insecure_redirects=True, **common)

    assert allowed.passed
    assert allowed.outputs["url"] == http_server.url("/json")


# ------------------------------------------------------------------------ TLS


async def test_tls_is_verified_by_default(
    ctx: LocalContext, https_server: LoopbackHttpServer
) -> None:
    with pytest.raises(ActionError) as caught:
        await run(ctx, url=https_server.url("/json"))

    assert caught.value.reason.startswith(
        f"TLS certificate not trusted: 127.0.0.1:{https_server.port}"
    )
    unverified = await run(ctx, url=https_server.url("/json"), verify_tls=False)
    assert unverified.passed


async def test_tls_passes_with_a_trusted_ca(
    ctx: LocalContext,
    https_server: LoopbackHttpServer,
    tls_ca: LoopbackCA,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca.ca_file))

    result = await run(ctx, url=https_server.url("/json"))

    assert result.passed
    assert result.outputs["url"].startswith("https://127.0.0.1:")


# -------------------------------------------------------------------- proxies


async def test_http_proxy_from_the_environment_is_used_and_masked(
    ctx: LocalContext,
    http_server: LoopbackHttpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = http_server.origin.replace("//", "//puser:proxy-pw-9@", 1)
    monkeypatch.setenv("HTTP_PROXY", proxy)

    result = await run(ctx, url="http://intranet.invalid/echo?q=1")

    headers = result.outputs["json"]["headers"]
    assert result.passed, result.reason
    assert headers["x-proxied-target"] == "http://intranet.invalid/echo"
    assert headers["proxy-authorization"] == "Basic ******"
    assert f"(via proxy http://puser:******@127.0.0.1:{http_server.port})" in (
        log_of(ctx)
    )
    assert "proxy-pw-9" not in log_of(ctx)


async def test_no_proxy_hosts_go_direct(
    ctx: LocalContext,
    http_server: LoopbackHttpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    result = await run(ctx, url=http_server.url("/echo"))

    assert "x-proxied-target" not in result.outputs["json"]["headers"]


async def test_an_unreachable_proxy_is_named_in_the_reason(
    ctx: LocalContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")

    with pytest.raises(ActionError) as caught:
        await run(ctx, url="http://intranet.invalid/x")

    assert caught.value.reason == f"connection refused: proxy 127.0.0.1:{port}"


# ---------------------------------------------------------------- big bodies


async def test_large_bodies_are_logged_and_kept_truncated(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(ctx, url=http_server.url("/big?size=300000"), max_body_log=1000)

    assert result.passed
    assert len(result.outputs["body"]) == 64 * 1024
    assert result.outputs["json"] is None
    log = log_of(ctx)
    assert "[body truncated: 1000 of 300000 bytes]" in log
    assert len(log) < 3000


async def test_a_body_past_the_read_cap_is_cut_off(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    result = await run(ctx, url=http_server.url("/big?size=3000000"), max_body_log=10)

    assert result.passed
    assert "[body truncated: 10 of 3000000 bytes]" in log_of(ctx)


# --------------------------------------------------------------------- secrets


def _forms(secret: str) -> list[str]:
    return [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(f"app:{secret}".encode()).decode(),
    ]


async def test_c27_leak2_secret_in_userinfo_and_header_never_leaks(
    make_ctx: MakeCtx,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CASES C27 leak2: the URL's password and an API key header, connection refused.

    The context's masker is not told the secret: the action must keep it out of
    everything by itself (the engine masks too, but not first).
    """
    caplog.set_level(logging.DEBUG)
    ctx = make_ctx()
    port = closed_port()

    with pytest.raises(ActionError) as caught:
        await run(
            ctx,
            url=f"https://app:{SECRET}@127.0.0.1:{port}/health?token={SECRET}",
            headers={"X-Api-Key": SECRET},
        )

    exc = caught.value
    assert exc.reason == f"connection refused: 127.0.0.1:{port}"
    assert exc.__context__ is None and exc.__cause__ is None
    seen = "\n".join(
        [
            log_of(ctx),
            *log_of(ctx, "info").splitlines(),
            caplog.text,
            *(r.getMessage() for r in caplog.records),
            str(exc),
            "".join(traceback.format_exception(exc)),
        ]
    )
    for form in _forms(SECRET):
        assert form not in seen
    assert f"> GET https://127.0.0.1:{port}/health?token=******" in seen


async def test_query_and_auth_secrets_are_masked_in_a_successful_exchange(
    make_ctx: MakeCtx, http_server: LoopbackHttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The echo route sends the credentials back; the log must not show them."""
    caplog.set_level(logging.DEBUG)
    ctx = make_ctx(secrets={"idp": "tok-echoed-back"})

    result = await run(
        ctx,
        url=http_server.url(f"/echo?api_key={quote(SECRET)}"),
        auth={"type": "bearer", "secret": "idp"},
    )

    assert result.passed
    seen = log_of(ctx) + caplog.text + str(result.outputs["body"])
    assert "tok-echoed-back" not in seen
    assert SECRET not in seen
    assert quote(SECRET, safe="") not in seen
    assert "/echo?api_key=******" in log_of(ctx)


async def test_basic_auth_uses_the_named_secret(
    make_ctx: MakeCtx, http_server: LoopbackHttpServer
) -> None:
    ctx = make_ctx(secrets={"pw": "basic-pw"})

    result = await run(
        ctx,
        url=http_server.url("/echo"),
        auth={"type": "basic", "secret": "pw", "username": "bot"},
    )

    token = base64.b64encode(b"bot:basic-pw").decode()
    assert result.passed
    assert result.outputs["json"]["headers"]["authorization"] == "Basic ******"
    assert token not in log_of(ctx)
    assert token not in result.outputs["body"]


async def test_a_missing_secret_fails_the_step(
    ctx: LocalContext, http_server: LoopbackHttpServer
) -> None:
    with pytest.raises(ActionError, match="no secret named 'nope'"):
        await run(
            ctx,
            url=http_server.url("/json"),
            auth={"type": "bearer", "secret": "nope"},
        )


async def test_an_unresolvable_host_names_the_host(ctx: LocalContext) -> None:
    with pytest.raises(
        ActionError, match=r"^cannot resolve host: no-such-host\.invalid$"
    ):
        await run(ctx, url="http://no-such-host.invalid/x")


# ------------------------------------------------------------ through the engine


def _every_file(root: Path) -> bytes:
    """The bytes of every file under ``root``: store, WAL, spool files."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def test_c27_leak2_through_the_engine_leaves_no_trace_in_the_store(
    tmp_path: Path,
    http_server: LoopbackHttpServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A runbook with C27's leak2 step, an authorised GET with extract, and a webhook.

    The store file, its WAL, the output spool files and the logs are grepped for the
    secret param and the named secret in their raw, percent-encoded and base64 forms.
    """
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HALOTERM_SECRET_IDP", "idp-token-42")
    settings = Settings(
        operators=with_harness(),
        notify={"noc": NotifyChannel(type="webhook", url=http_server.url("/hook/n"))},
    )
    services = Services.open(tmp_path / "store.db", settings=settings, seed=False)
    await services.start()
    port = closed_port()
    book = tmp_path / "leak.yaml"
    book.write_text(
        textwrap.dedent(
            f"""
            name: http-leak2
            params:
              db_password: {{type: secret, required: true}}
            steps:
              - id: fetch
                action: http
                with:
                  url: "{http_server.url("/json")}"
                  auth: {{type: bearer, secret: idp}}
                  extract: {{first: "data.items[0].id"}}
              - id: leak2
                action: http
                with:
                  url: "https://app:{{{{ params.db_password }}}}@127.0.0.1:{port}/h"
                  headers: {{X-Api-Key: "{{{{ params.db_password }}}}"}}
                on_failure: continue
              - id: tell
                action: notify
                with:
                  channel: noc
                  message: >-
                    id {{{{ steps.fetch.outputs.first }}}} {{{{ params.db_password }}}}
            """
        ),
        encoding="utf-8",
    )
    try:
        services.import_runbook(book)
        execution = await services.engine.start(
            "http-leak2", {"db_password": SECRET}, operator="alice"
        )
        await services.engine.wait(execution)
        runs = {run.step_id: run for run in services.store.step_runs(execution)}
    finally:
        await services.stop()

    assert runs["fetch"].outputs["first"] == 7
    assert runs["leak2"].reason == f"connection refused: 127.0.0.1:{port}"
    assert http_server.received[0].json()["message"] == "id 7 ******"
    seen = _every_file(tmp_path).decode("utf-8", "replace") + caplog.text
    for form in [*_forms(SECRET), *_forms("idp-token-42")]:
        assert form not in seen
