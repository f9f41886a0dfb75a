"""Every bundled example runs green from ``haloterm run`` on a fresh store."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.cli.test_cli import Cli


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_store_is_seeded_with_every_example(cli: Cli) -> None:
    names = {r["name"] for r in json.loads(cli("runbooks", "--json").stdout)}
    examples = Path(__file__).parents[2] / "haloterm" / "examples" / "runbooks"
    assert names == {p.stem for p in examples.glob("*.yaml")}
    tickets = json.loads(cli("ticket", "list", "--json").stdout)
    assert any(t["priority"] == "P1" and t["source"] == "alertmanager" for t in tickets)
    text = cli("runbooks").stdout
    assert "restart-demo-service" in text and "runs 0" in text


def test_disk_memory_report(cli: Cli) -> None:
    result = cli("run", "disk-memory-report", "-p", "threshold=99")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Filesystem" in result.stdout
    assert "full passed" in result.stdout


@pytest.mark.parametrize("broken", [False, True])
def test_restart_demo_service_and_its_rollback(
    cli: Cli, tmp_path: Path, broken: bool
) -> None:
    args = [
        "run", "restart-demo-service", "--json",
        "-p", f"port={free_port()}",
        "-p", f"workdir={tmp_path / 'svc'}",
        "-p", "keep_running=false",
        "-p", f"broken_release={str(broken).lower()}",
    ]  # fmt: skip
    result = cli(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    steps = {s["step_id"]: s["status"] for s in data["steps"] if not s["host"]}
    if broken:
        assert steps["health"] == "failed"
        assert steps["rollback"] == "passed"
        assert steps["stop"] == "skipped"
    else:
        assert steps["health"] == "passed"
        assert steps["rollback"] == "skipped"
        assert steps["stop"] == "passed"
    assert not (tmp_path / "svc" / "pid").exists()


def test_store_maintenance_on_its_own_store(cli: Cli) -> None:
    cli("runbooks")
    result = cli("run", "store-maintenance", "-p", f"db={cli.db}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "integrity | ok" in result.stdout
    assert "tickets" in result.stdout


def test_onboarding_waits_for_a_lead(cli: Cli, tmp_path: Path) -> None:
    ticket = cli(
        "ticket", "new", "--title", "New joiner", "--type", "onboarding",
        "--priority", "P3",
    ).stdout.strip()  # fmt: skip
    started = cli(
        "run", "onboard-new-joiner", "--ticket", ticket, "--no-wait", "--json",
        "-p", "full_name=Dana O'Neil; rm -rf /", "-p", "username=dana.oneil",
        "-p", "start_date=2026-12-07", "-p", f"root={tmp_path / 'homes'}",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    execution_id = json.loads(started.stdout)["id"]
    approved = cli("approve", str(execution_id), "approval", user="bob")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    welcome = (tmp_path / "homes" / "dana.oneil" / "WELCOME").read_text()
    assert welcome.startswith("Welcome, Dana O'Neil; rm -rf / (platform team)")
    shown = json.loads(cli("ticket", "show", ticket, "--json").stdout)
    assert shown["status"] == "resolved"
