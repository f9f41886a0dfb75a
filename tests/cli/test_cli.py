"""The headless command line, run as a real subprocess on a real store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "haloterm" / "examples" / "runbooks"


class Cli:
    """Runs ``python -m haloterm`` with a private store and environment."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "store.db"
        self.env = {**os.environ, "HALOTERM_DB": str(self.db)}
        self.tmp_path = tmp_path

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        user: str = "alice",
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "HALOTERM_OPERATOR": user}
        return subprocess.run(
            [sys.executable, "-m", "haloterm", *args],
            capture_output=True,
            text=True,
            env=env,
            input=input,
            timeout=timeout,
        )

    def start_run(self, name: str, *, until: str) -> subprocess.Popen[str]:
        """Start ``haloterm run NAME`` in the background; return once a line of its
        output holds ``until`` (a step's status change, say)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "haloterm", "run", name],
            env={**self.env, "HALOTERM_OPERATOR": "alice"},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if until in line:
                break
        return proc

    def write(self, name: str, text: str) -> Path:
        path = self.tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path


def test_run_prints_steps_and_exits_by_outcome(cli: Cli) -> None:
    cli.write(
        "ok.yaml",
        "name: ok\nsteps:\n"
        "  - {id: hi, action: shell, with: {command: 'echo hello'}}\n",
    )
    cli.write(
        "bad.yaml",
        "name: bad\nsteps:\n  - {id: boom, action: shell, with: {command: 'exit 3'}}\n",
    )
    assert (
        cli(
            "import", str(cli.tmp_path / "ok.yaml"), str(cli.tmp_path / "bad.yaml")
        ).returncode
        == 0
    )

    ok = cli("run", "ok")
    assert ok.returncode == 0, ok.stderr
    assert "hi | hello" in ok.stdout
    assert "hi passed" in ok.stdout

    bad = cli("run", "bad")
    assert bad.returncode == 1
    assert "boom failed: exit 3" in bad.stdout

    missing = cli("run", "nope")
    assert missing.returncode == 2
    assert "no runbook named 'nope'" in missing.stderr


def test_bad_params_exit_2_and_name_the_param(cli: Cli) -> None:
    cli.write(
        "typed.yaml",
        "name: typed\nparams:\n  n: {type: integer, max: 3}\n"
        "steps:\n  - {id: s, action: shell, with: {command: 'true'}}\n",
    )
    cli("import", str(cli.tmp_path / "typed.yaml"))
    result = cli("run", "typed", "-p", "n=7")
    assert result.returncode == 2
    assert "params.n: 7 is above the maximum 3" in result.stderr


def test_validate_reports_every_problem_with_its_place(cli: Cli) -> None:
    path = cli.write(
        "broken.yaml",
        "name: broken\nsteps:\n  - id: a\n    action: shell\n"
        "    with: {command: 'true'}\n"
        "    timout: 5s\n  - id: a\n    action: shel\n",
    )
    result = cli("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:6:5: steps[0].timout" in result.stderr
    assert "did you mean `timeout`" in result.stderr
    assert "duplicate step id" in result.stderr
    assert cli("runbooks", "--json").stdout.count('"name": "broken"') == 0


def test_tickets_executions_show_and_audit_as_json(cli: Cli) -> None:
    created = cli(
        "ticket",
        "new",
        "--title",
        "[bold]URGENT[/bold]",
        "--priority",
        "P1",
        "--type",
        "incident",
        "--field",
        "host=web-01",
    )
    assert created.returncode == 0, created.stderr
    ticket_id = int(created.stdout.strip())

    run = cli("run", "disk-memory-report", "--ticket", str(ticket_id), "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["status"] == "succeeded"
    assert data["ticket_id"] == ticket_id

    listed = json.loads(cli("executions", "--json").stdout)
    assert listed[0]["id"] == data["id"]
    assert {"id", "runbook", "status"} <= set(listed[0])

    shown = json.loads(cli("show", str(data["id"]), "--json").stdout)
    assert [s["step_id"] for s in shown["steps"]][:2] == ["disk", "memory"]
    assert shown["log"]

    ticket = json.loads(cli("ticket", "show", str(ticket_id), "--json").stdout)
    assert ticket["title"] == "[bold]URGENT[/bold]"
    assert ticket["fields"] == {"host": "web-01"}

    audit = json.loads(cli("audit", "--json").stdout)
    assert any(a["action"].startswith("ticket") for a in audit)
    csv_out = cli("audit", "--csv").stdout
    assert csv_out.splitlines()[0].startswith("id,at,actor,action")


def test_no_wait_then_approve_from_another_process(cli: Cli) -> None:
    cli.write(
        "gate.yaml",
        "name: gate\nsteps:\n"
        "  - id: ok\n    action: approval\n"
        "    with: {approvers: ['role:lead'], message: 'Go?'}\n"
        "  - {id: after, action: shell, with: {command: 'echo after approval'}}\n",
    )
    cli("import", str(cli.tmp_path / "gate.yaml"))
    started = cli("run", "gate", "--no-wait", "--json")
    assert started.returncode == 0, started.stderr
    execution_id = json.loads(started.stdout)["id"]
    assert json.loads(started.stdout)["status"] == "waiting"

    pending = json.loads(cli("approvals", "--json").stdout)
    assert [(a["execution_id"], a["step_id"]) for a in pending] == [
        (execution_id, "ok")
    ]

    refused = cli("approve", str(execution_id), "ok")
    assert refused.returncode == 1
    assert "refused" in refused.stderr

    approved = cli("approve", str(execution_id), "ok", "--comment", "fine", user="bob")
    assert approved.returncode == 0, approved.stderr + approved.stdout
    assert "after approval" in approved.stdout
    final = json.loads(cli("show", str(execution_id), "--json").stdout)
    assert final["status"] == "succeeded"


def test_a_killed_run_is_interrupted_and_resumable(cli: Cli) -> None:
    marker = cli.tmp_path / "second-attempt"
    cli.write(
        "slow.yaml",
        "name: slow\nsteps:\n"
        "  - {id: first, action: shell, with: {command: 'echo first'}}\n"
        "  - id: wait\n    action: shell\n"
        f"    with: {{command: 'test -e {marker} || sleep 30'}}\n",
    )
    cli("import", str(cli.tmp_path / "slow.yaml"))
    proc = cli.start_run("slow", until="wait running")
    assert proc.stdout is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()

    deadline = time.monotonic() + 10
    listed = json.loads(cli("executions", "--json").stdout)
    while listed[0]["status"] != "interrupted" and time.monotonic() < deadline:
        listed = json.loads(cli("executions", "--json").stdout)
    assert listed[0]["status"] == "interrupted"
    assert listed[0]["current_step"] == "wait"

    marker.touch()
    resumed = cli("resume", str(listed[0]["id"]))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "first | first" not in resumed.stdout
    final = json.loads(cli("show", str(listed[0]["id"]), "--json").stdout)
    assert final["status"] == "succeeded"
    assert [s["status"] for s in final["steps"] if not s["host"]] == [
        "passed",
        "passed",
    ]


def test_run_prints_every_line_once_even_past_the_stored_tail(cli: Cli) -> None:
    cli.write(
        "many.yaml",
        "name: many\nsteps:\n"
        "  - {id: s, action: shell, with: {command: 'seq 1 60000'}}\n",
    )
    cli("import", str(cli.tmp_path / "many.yaml"))
    result = cli("run", "many")
    assert result.returncode == 0, result.stderr
    numbers = [
        line.rsplit(" ", 1)[1]
        for line in result.stdout.splitlines()
        if line.startswith("[1] s | ")
    ]
    assert numbers == [str(n) for n in range(1, 60001)]
    assert "output truncated" in result.stdout


def test_ticket_text_cannot_drive_the_terminal(cli: Cli) -> None:
    title = "osc52 \x1b]52;c;ZWNobyBoaQ==\x07 \x1b]8;;http://evil\x1b\\link\x1b[2J end"
    created = cli("ticket", "new", "--title", title, "--field", "k=\x1b[31mred")
    ticket_id = created.stdout.strip()
    for out in (cli("ticket", "list").stdout, cli("ticket", "show", ticket_id).stdout):
        assert "\x1b" not in out and "\x07" not in out
        assert "osc52" in out and "end" in out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_cancels_the_run_and_stops_its_processes(
    cli: Cli, signum: int
) -> None:
    pidfile = cli.tmp_path / "pid"
    cli.write(
        "sleepy.yaml",
        "name: sleepy\nsteps:\n  - id: nap\n    action: shell\n"
        f"    with: {{command: 'echo $$ > {pidfile}; exec sleep 60',"
        " kill_grace: 1s}\n",
    )
    cli("import", str(cli.tmp_path / "sleepy.yaml"))
    proc = cli.start_run("sleepy", until="nap running")
    assert proc.stdout is not None
    while not pidfile.exists() or not pidfile.read_text().strip():
        time.sleep(0.05)
    proc.send_signal(signum)
    rest = proc.stdout.read()
    assert proc.wait(timeout=20) == 1
    proc.stdout.close()
    assert "cancelled" in rest
    step_pid = int(pidfile.read_text())
    assert not Path(f"/proc/{step_pid}").exists()
    executions = json.loads(cli("executions", "--json").stdout)
    assert executions[0]["status"] == "cancelled"


@pytest.mark.parametrize(
    "args",
    [
        ["show", "99999999999999999999"],
        ["run", "disk-memory-report", "--ticket", "99999999999999999999"],
        ["ticket", "new", "--title", "bad \udcff byte"],
        ["ticket", "show", "424242"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Cli, args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "haloterm", *args],
        capture_output=True,
        env={**cli.env, "HALOTERM_OPERATOR": "alice"},
        timeout=60,
    )
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert result.stderr.startswith(b"haloterm: ")


def test_validate_finds_a_cycle_across_the_files_given(cli: Cli) -> None:
    a = cli.write(
        "a.yaml", "name: a\nsteps:\n  - {id: b, action: runbook, with: {runbook: b}}\n"
    )
    b = cli.write(
        "b.yaml", "name: b\nsteps:\n  - {id: a, action: runbook, with: {runbook: a}}\n"
    )
    result = cli("validate", str(a), str(b))
    assert result.returncode == 2
    # Each is placed on the field that names the next runbook of the cycle.
    assert f"{a}:3:46: steps[0].with.runbook: cycle: a → b → a" in result.stderr
    assert f"{b}:3:46: steps[0].with.runbook: cycle: b → a → b" in result.stderr
    # Importing one after the other: the second closes the cycle and is refused.
    assert cli("import", str(a)).returncode == 0
    refused = cli("import", str(b))
    assert refused.returncode == 2
    assert f"{b}:3:46: steps[0].with.runbook: cycle: b → a → b" in refused.stderr


def test_validate_warns_of_a_child_runbook_it_cannot_see(cli: Cli) -> None:
    a = cli.write(
        "a.yaml",
        "name: a\nsteps:\n  - id: call\n    action: runbook\n"
        "    with: {runbook: nowhere}\n",
    )
    result = cli("validate", str(a))
    assert result.returncode == 0
    assert f"{a}: ok" in result.stdout
    assert f"{a}:5:21: steps[0].with.runbook: warning: 'nowhere'" in result.stderr


def test_cancel_from_another_process_stops_the_run_and_closes_its_approval(
    cli: Cli,
) -> None:
    cli.write(
        "stop-me.yaml",
        "name: stop-me\nsteps:\n"
        "  - id: wait\n    action: shell\n"
        "    with: {command: 'sleep 30', kill_grace: 1s}\n"
        "  - id: never\n    action: shell\n    with: {command: 'echo never'}\n",
    )
    cli("import", str(cli.tmp_path / "stop-me.yaml"))
    proc = cli.start_run("stop-me", until="wait running")
    assert proc.stdout is not None
    cancelled = cli("cancel", "1", "--reason", "wrong host", user="bob")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "execution 1 cancelled" in cancelled.stdout
    rest = proc.stdout.read()
    assert proc.wait(timeout=20) == 1
    proc.stdout.close()
    assert "never" not in rest.replace("never skipped", "")
    shown = json.loads(cli("show", "1", "--json").stdout)
    assert shown["status"] == "cancelled"
    assert shown["reason"] == "cancelled by bob: wrong host"


def test_cancelling_a_waiting_run_closes_its_approval(cli: Cli) -> None:
    cli.write(
        "gate2.yaml",
        "name: gate2\nsteps:\n  - id: ok\n    action: approval\n"
        "    with: {approvers: ['role:lead']}\n",
    )
    cli("import", str(cli.tmp_path / "gate2.yaml"))
    started = json.loads(cli("run", "gate2", "--no-wait", "--json").stdout)
    assert cli("cancel", str(started["id"])).returncode == 0
    assert json.loads(cli("approvals", "--json").stdout) == []
    late = cli("approve", str(started["id"]), "ok", user="bob")
    assert late.returncode == 1
    assert "already cancelled" in late.stderr


def test_ticket_new_refuses_a_blank_title_and_a_field_given_twice(cli: Cli) -> None:
    blank = cli("ticket", "new", "--title", "  ")
    assert blank.returncode == 2 and "a ticket needs a title" in blank.stderr
    twice = cli("ticket", "new", "--title", "t", "--field", "a=1", "--field", "a=2")
    assert twice.returncode == 2
    assert "--field" in twice.stderr and "'a' is given twice" in twice.stderr
    bad = cli("ticket", "new", "--title", "t", "--field", "a")
    assert bad.returncode == 2 and "Invalid value for --field" in bad.stderr
