"""A third-party action installed through the entry-point group, exactly as a plug-in
would be, runs in a runbook; a broken one is reported and harms nothing else."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.cli.test_cli import Cli

PLUGIN = '''
"""A tiny haloterm plug-in: greets someone, a given number of times."""

from haloterm.plugins.base import Action, ActionInputs, StepResult


class GreetInputs(ActionInputs):
    who: str
    times: int = 1


class GreetAction(Action):
    name = "greet"
    Inputs = GreetInputs
    description = "Say hello (a test plug-in)"

    async def run(self, inputs, ctx):
        for _ in range(inputs.times):
            ctx.output().write(f"hello {inputs.who}\\n".encode())
        return StepResult(passed=True, outputs={"greeted": inputs.who})
'''

BROKEN = "raise RuntimeError('this plug-in cannot load')\n"


def install(site: Path, dist: str, module: str, source: str, entry: str) -> None:
    """Write a module and its dist-info with a haloterm.actions entry point."""
    (site / f"{module}.py").write_text(source, encoding="utf-8")
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[haloterm.actions]\n{entry}\n", encoding="utf-8"
    )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    site = tmp_path / "site"
    site.mkdir()
    install(
        site,
        "haloterm_greet",
        "haloterm_greet",
        PLUGIN,
        "greet = haloterm_greet:GreetAction",
    )
    install(
        site, "haloterm_broken", "haloterm_broken", BROKEN, "broken = haloterm_broken:X"
    )
    runner = Cli(tmp_path)
    runner.env["PYTHONPATH"] = str(site)
    return runner


def test_a_plugin_action_is_listed_and_runs(cli: Cli) -> None:
    listed = cli("actions")
    assert listed.returncode == 0
    assert "greet" in listed.stdout
    assert "broken" in listed.stderr and "cannot load" in listed.stderr

    path = cli.write(
        "greeting.yaml",
        textwrap.dedent(
            """
            name: greeting
            steps:
              - id: hi
                action: greet
                with: {who: "{{ execution.operator }}", times: 2}
              - id: after
                action: shell
                with: {command: "echo greeted {{ steps.hi.outputs.greeted }}"}
            """
        ),
    )
    assert cli("import", str(path)).returncode == 0
    result = cli("run", "greeting")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("hi | hello alice") == 2
    assert "after | greeted alice" in result.stdout


def test_a_runbook_using_the_broken_plugin_is_refused_with_the_reason(
    cli: Cli,
) -> None:
    path = cli.write(
        "uses-broken.yaml",
        "name: uses-broken\nsteps:\n  - {id: x, action: broken}\n",
    )
    result = cli("validate", str(path))
    assert result.returncode == 2
    assert "steps[0].action" in result.stderr
    assert "cannot load" in result.stderr
