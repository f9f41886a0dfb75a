"""Runbook-level ``notify``: a run tells channels of its start, end and approvals."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from haloterm.config import NotifyChannel
from haloterm.engine import StartError
from haloterm.loader import LoadError, load_runbook_text
from haloterm.models import ExecutionStatus
from haloterm.services import Services
from tests.engine.conftest import make_settings
from tests.servers import LoopbackHttpServer, closed_port


@pytest.fixture
async def nsvc(
    tmp_path: Path, http_server: LoopbackHttpServer
) -> AsyncIterator[Services]:
    """Services whose ``noc`` channel posts to the loopback webhook sink."""
    channels = {
        "noc": NotifyChannel(type="webhook", url=http_server.url("/hook/noc")),
        "refusing": NotifyChannel(
            type="webhook", url=f"http://127.0.0.1:{closed_port()}/hook"
        ),
        "erroring": NotifyChannel(
            type="webhook", url=http_server.url("/hook/err?status=500")
        ),
    }
    services = Services.open(
        tmp_path / "store.db", settings=make_settings(notify=channels), seed=False
    )
    await services.start()
    yield services
    await services.stop()


def add(svc: Services, tmp_path: Path, text: str) -> str:
    path = tmp_path / "runbook.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return svc.import_runbook(path).name


def posted(server: LoopbackHttpServer, path: str = "/hook/noc") -> list[Any]:
    return [r.json() for r in server.received if r.path == path]


async def run_lines(svc: Services, execution_id: int) -> list[tuple[str, str]]:
    await svc.engine.logs.flush()
    lines = svc.store.get_logs(execution_id)
    return [(line.step_id, line.text) for line in lines if line.stream == "info"]


PASSING = """
name: tidy
title: Tidy up
notify:
  - {channel: noc, on: [start, success, failure, waiting]}
steps:
  - id: one
    action: shell
    with: {command: "true"}
"""


async def test_a_passing_run_announces_its_start_and_success(
    nsvc: Services, tmp_path: Path, http_server: LoopbackHttpServer
) -> None:
    add(nsvc, tmp_path, PASSING)
    execution_id = await nsvc.engine.start("tidy", {}, operator="alice")

    assert await nsvc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED

    start, success = posted(http_server)
    assert start["message"] == f"▶ Tidy up started (run #{execution_id} by alice)"
    assert start["step"] == "notify:start"
    assert start["severity"] == "info"
    assert start["runbook"] == "tidy"
    assert start["execution_id"] == execution_id
    assert success["message"] == f"✔ Tidy up succeeded (run #{execution_id})"
    assert success["step"] == "notify:success"
    lines = await run_lines(nsvc, execution_id)
    assert ("notify:start", "notified noc (webhook)") in lines
    assert ("notify:success", "notified noc (webhook)") in lines


async def test_a_failing_run_sends_its_reason_through_a_template(
    nsvc: Services, tmp_path: Path, http_server: LoopbackHttpServer
) -> None:
    add(
        nsvc,
        tmp_path,
        """
        name: breaks
        title: Breaks
        params:
          token: {type: secret}
        notify:
          - {channel: noc, on: [failure]}
          - channel: noc
            on: [failure]
            title: "{{ runbook.name }} #{{ execution.id }}"
            message: "{{ runbook.title }} {{ execution.status }}: {{ execution.reason }} ({{ params.token }})"
        steps:
          - id: boom
            action: shell
            with: {command: "exit 3"}
        """,  # noqa: E501
    )
    execution_id = await nsvc.engine.start(
        "breaks", {"token": "hunter22"}, operator="alice"
    )

    assert await nsvc.engine.wait(execution_id) is ExecutionStatus.FAILED

    execution = nsvc.store.get_execution(execution_id)
    assert execution is not None and execution.reason
    messages = sorted(p["message"] for p in posted(http_server))
    assert messages == sorted(
        [
            f"✘ Breaks failed (run #{execution_id}): {execution.reason}",
            f"Breaks failed: {execution.reason} (******)",
        ]
    )
    assert {p["severity"] for p in posted(http_server)} == {"error"}
    assert f"breaks #{execution_id}" in {p["title"] for p in posted(http_server)}
    assert "step boom failed" in execution.reason


async def test_an_approval_run_announces_its_wait(
    nsvc: Services, tmp_path: Path, http_server: LoopbackHttpServer
) -> None:
    add(
        nsvc,
        tmp_path,
        """
        name: gated
        title: Gated
        notify:
          - {channel: noc, on: [waiting]}
        steps:
          - id: approve
            action: approval
            with: {approvers: ["role:lead"], message: "go?", timeout: 60s}
          - id: act
            action: shell
            with: {command: "true"}
        """,
    )
    execution_id = await nsvc.engine.start("gated", {}, operator="alice")
    await nsvc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    for _ in range(200):
        if posted(http_server):
            break
        await asyncio.sleep(0.02)

    [waiting] = posted(http_server)
    assert waiting["message"] == (
        f"⏸ Gated waits for approval at step approve (run #{execution_id})"
    )
    assert waiting["severity"] == "warning"

    await nsvc.engine.decide(
        execution_id, "approve", actor="bob", decision="approved", comment="go"
    )
    assert await nsvc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED
    assert len(posted(http_server)) == 1


async def test_a_broken_channel_does_not_fail_the_run(
    nsvc: Services,
    tmp_path: Path,
    http_server: LoopbackHttpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    add(
        nsvc,
        tmp_path,
        """
        name: sturdy
        notify:
          - {channel: refusing, on: [start]}
          - {channel: erroring, on: [success]}
          - {channel: noc, on: [success]}
        steps:
          - id: one
            action: shell
            with: {command: "true"}
        """,
    )
    caplog.set_level(logging.WARNING, logger="haloterm.engine.run_notify")
    execution_id = await nsvc.engine.start("sturdy", {}, operator="alice")

    assert await nsvc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED

    assert len(posted(http_server)) == 1
    lines = dict(await run_lines(nsvc, execution_id))
    assert lines["notify:start"].startswith(
        "notification to refusing failed: notify refusing (webhook): connection"
    )
    failures = [
        text
        for step, text in await run_lines(nsvc, execution_id)
        if step == "notify:success" and "failed" in text
    ]
    assert failures == [
        "notification to erroring failed: notify erroring (webhook): "
        "HTTP 500 Internal Server Error",
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2


async def test_a_channel_missing_from_the_config_refuses_the_run_up_front(
    nsvc: Services, tmp_path: Path
) -> None:
    """Better than failing at the notify step after the steps before it ran."""
    add(
        nsvc,
        tmp_path,
        """
        name: tells-nobody
        notify:
          - {channel: console, on: [start]}
        steps:
          - id: change
            action: shell
            with: {command: "true"}
          - id: tell
            action: notify
            with: {channel: nowhere, message: done}
        """,
    )
    with pytest.raises(
        StartError, match="step tell: notify: unknown channel 'nowhere'"
    ):
        await nsvc.engine.start("tells-nobody", {}, operator="alice")
    assert nsvc.store.list_executions() == []


def test_the_loader_checks_the_notify_field() -> None:
    text = """name: a
notify:
  - {channel: noc, on: [start, finish]}
  - {channel: "email:nobody", on: [failure]}
  - {channel: noc, on: [success], message: "{{ steps.nope.output }}"}
steps:
  - id: s
    action: shell
    with: {command: ls}
"""
    with pytest.raises(LoadError) as caught:
        load_runbook_text(text, "rb.yaml")
    found = [(p.line, p.column, p.path, p.message) for p in caught.value.problems]
    assert found == [
        (
            3,
            32,
            "notify[0].on[1]",
            "must be 'start', 'success', 'failure' or 'waiting'",
        ),
        (4, 15, "notify[1].channel", "not an email address: 'nobody'"),
        (5, 44, "notify[2].message", "`steps.nope` is not a step of this runbook"),
    ]
    assert str(caught.value.problems[0]).startswith("rb.yaml:3:32:")
