"""``haloterm approvals``, ``approve``/``reject`` refusals, ``backup`` and ``purge``."""

from __future__ import annotations

import json
import sqlite3

from tests.cli.test_cli import Cli

GATE = (
    "name: gate\nparams:\n  token: {type: secret, required: true}\n"
    "  host: {type: string, default: web-01}\nsteps:\n"
    "  - id: ok\n    action: approval\n"
    "    with: {approvers: ['role:lead'], message: 'Restart {{ params.host }}?',"
    " timeout: 1h}\n"
    "  - {id: after, action: shell,"
    " with: {command: 'echo restart {{ params.host }}'}}\n"
)


def _waiting(cli: Cli) -> int:
    cli.write("gate.yaml", GATE)
    assert cli("import", str(cli.tmp_path / "gate.yaml")).returncode == 0
    started = cli("run", "gate", "-p", "token=t0psecret", "--no-wait", "--json")
    assert started.returncode == 0, started.stderr
    return int(json.loads(started.stdout)["id"])


def test_approvals_shows_message_what_runs_next_deadline_and_who(cli: Cli) -> None:
    execution_id = _waiting(cli)
    shown = cli("approvals", user="bob")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"execution {execution_id} (gate) step ok, asked by alice" in out
    assert "message:  Restart web-01?" in out
    assert 'next:     after (shell) {"command": "echo restart \\"web-01\\""}' in out
    assert '"token": "******"' in out and "t0psecret" not in out
    assert "left, then reject" in out
    assert "who:      role:lead" in out
    assert f"may decide: haloterm approve {execution_id} ok" in out
    assert "you:      not an approver" in cli("approvals").stdout


def test_refusals_exit_1_and_say_why(cli: Cli) -> None:
    execution_id = _waiting(cli)
    own = cli("approve", str(execution_id), "ok")
    assert own.returncode == 1
    assert "alice is not an approver" in own.stderr
    missing = cli("approve", str(execution_id), "nope", user="bob")
    assert missing.returncode == 1 and "no approval step nope" in missing.stderr

    # bob decides; the run continues in his process (the starter's is gone),
    # with the secret it needs given again through the environment.
    cli.env["HALOTERM_SECRET_TOKEN"] = "t0psecret"
    approved = cli("approve", str(execution_id), "ok", "--comment", "go", user="bob")
    assert approved.returncode == 0, approved.stderr
    assert "restart web-01" in approved.stdout
    late = cli("reject", str(execution_id), "ok", "--comment", "no", user="bob")
    assert late.returncode == 1
    assert "already approved by bob at" in late.stderr


def test_backup_and_purge(cli: Cli) -> None:
    cli.write(
        "hi.yaml",
        "name: hi\nsteps:\n  - {id: a, action: shell, with: {command: 'echo hi'}}\n",
    )
    assert cli("import", str(cli.tmp_path / "hi.yaml")).returncode == 0
    assert cli("run", "hi").returncode == 0
    copy = cli.tmp_path / "backups" / "copy.db"
    done = cli("backup", str(copy))
    assert done.returncode == 0, done.stderr
    assert "integrity ok" in done.stdout
    conn = sqlite3.connect(str(copy))
    try:
        assert conn.execute("SELECT count(*) FROM log_lines").fetchone()[0] > 0
    finally:
        conn.close()
    again = cli("backup", str(copy))
    assert again.returncode == 1 and "already exists" in again.stderr

    kept = cli("purge", "--older-than", "90d")
    assert kept.returncode == 0, kept.stderr
    assert "purged logs of 0 runs" in kept.stdout
    bad = cli("purge", "--older-than", "soon")
    assert bad.returncode == 2
    audit = json.loads(cli("audit", "--json").stdout)
    assert {"store.backup", "store.purge"} <= {r["action"] for r in audit}
