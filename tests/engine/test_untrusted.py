"""Secrets (CASES C27) and untrusted ticket text (C28) through the whole engine."""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path

import pytest

from haloterm.logsetup import LOG_MASKER, log_file, setup_logging, teardown_logging
from haloterm.models import ExecutionStatus
from haloterm.services import Services
from tests.engine.conftest import make_settings

SECRET = "S3cr3t!pw"

LEAKY = """
name: leaky
params:
  db_password: {type: secret, required: true}
  workdir: {type: string, required: true}
steps:
  - id: leak1
    action: shell
    with:
      env: {DB_PASSWORD: "{{ params.db_password }}"}
      cwd: "{{ params.workdir }}"
      command: |
        echo "pw=$DB_PASSWORD"
        printf %s "$DB_PASSWORD" | base64
        echo direct {{ params.db_password }}
        cat /proc/$$/cmdline > argv.txt
    on_failure: continue
  - id: leak2
    action: http
    with:
      url: "http://app:{{ params.db_password }}@127.0.0.1:9/health"
      headers: {X-Api-Key: "{{ params.db_password }}"}
    timeout: 5s
    on_failure: continue
  - id: echo-failure
    action: shell
    with: {command: "echo {{ steps.leak2.reason }} >&2"}
"""


async def test_a_secret_never_lands_anywhere_in_clear(tmp_path: Path) -> None:
    """C27: raw, base64 and URL-encoded forms are absent from the store and the log."""
    log_path = setup_logging("DEBUG")
    svc = Services.open(tmp_path / "s.db", settings=make_settings(), seed=False)
    await svc.start()
    try:
        path = tmp_path / "leaky.yaml"
        path.write_text(LEAKY, encoding="utf-8")
        svc.import_runbook(path)
        LOG_MASKER.add(SECRET)
        execution_id = await svc.engine.start(
            "leaky", {"db_password": SECRET, "workdir": str(tmp_path)}, operator="alice"
        )
        assert await svc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED
        texts = "\n".join(line.text for line in svc.store.get_logs(execution_id))
        assert "pw=******" in texts
        assert "direct ******" in texts
        assert b"HALOTERM_SECRET_DB_PASSWORD" in (tmp_path / "argv.txt").read_bytes()
        execution = svc.store.get_execution(execution_id)
        assert execution is not None and "db_password" not in execution.params
    finally:
        await svc.stop()
        teardown_logging()

    forms = [
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        urllib.parse.quote(SECRET, safe=""),
    ]
    for name, blob in _files_written(tmp_path, log_path).items():
        for form in forms:
            assert form.encode() not in blob, f"{form!r} found in {name}"


def _files_written(tmp_path: Path, log_path: Path) -> dict[str, bytes]:
    """The store, its WAL, the spool files and the log, by name."""
    blobs = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    if log_path.exists():
        blobs["log"] = log_path.read_bytes()
    for out in (tmp_path / "output").iterdir():
        blobs[out.name] = out.read_bytes()
    return blobs


@pytest.mark.parametrize(
    "title",
    [
        "$(touch {probe}); echo hi",
        "`touch {probe}`",
        "x; touch {probe}",
        "Disk full on [/var] again",
        "[/",
    ],
)
async def test_ticket_text_is_data_never_shell(tmp_path: Path, title: str) -> None:
    """C28: a templated ticket title is one quoted word in a shell command."""
    probe = tmp_path / "pwned"
    title = title.format(probe=probe)
    svc = Services.open(tmp_path / "s.db", settings=make_settings(), seed=False)
    await svc.start()
    try:
        path = tmp_path / "log-title.yaml"
        path.write_text(
            """
name: log-title
steps:
  - id: log
    action: shell
    with: {command: "printf '%s\\\\n' {{ ticket.title }}"}
""",
            encoding="utf-8",
        )
        svc.import_runbook(path)
        ticket_id = svc.store.create_ticket(title=title, priority="P1", actor="alice")
        execution_id = await svc.engine.start(
            "log-title", {}, operator="alice", ticket_id=ticket_id
        )
        assert await svc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED
        texts = [line.text for line in svc.store.get_logs(execution_id)]
        assert title in texts
        assert not probe.exists()
    finally:
        await svc.stop()


async def test_secrets_written_to_tickets_are_masked(tmp_path: Path) -> None:
    svc = Services.open(tmp_path / "s.db", settings=make_settings(), seed=False)
    await svc.start()
    try:
        path = tmp_path / "ticketed.yaml"
        path.write_text(
            """
name: ticketed
params:
  pw: {type: secret, required: true}
steps:
  - id: fields
    action: ticket
    with: {fields: {pw: "{{ params.pw }}"}, note: "pw {{ params.pw }}"}
  - id: open
    action: ticket
    with: {create: {title: "pw {{ params.pw }}", fields: {x: ["{{ params.pw }}"]}}}
""",
            encoding="utf-8",
        )
        svc.import_runbook(path)
        ticket_id = svc.store.create_ticket(title="t", actor="alice")
        execution_id = await svc.engine.start(
            "ticketed", {"pw": SECRET}, operator="alice", ticket_id=ticket_id
        )
        assert await svc.engine.wait(execution_id) is ExecutionStatus.SUCCEEDED
        ticket = svc.store.get_ticket(ticket_id)
        assert ticket is not None and ticket.fields == {"pw": "******"}
    finally:
        await svc.stop()
    for name, blob in _files_written(tmp_path, log_file()).items():
        assert SECRET.encode() not in blob, name
