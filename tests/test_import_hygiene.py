"""The core layers and the headless CLI never import Textual."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = [
    "haloterm.engine",
    "haloterm.engine.runner",
    "haloterm.storage",
    "haloterm.plugins.registry",
    "haloterm.plugins.shell",
    "haloterm.plugins.http",
    "haloterm.plugins.ssh",
    "haloterm.plugins.notify",
    "haloterm.automation.match",
    "haloterm.services",
    "haloterm.cli",
]


@pytest.mark.parametrize("module", CORE)
def test_core_module_does_not_import_textual(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_headless_command_does_not_import_textual() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from haloterm.cli import main\n"
        "result = CliRunner().invoke(main, ['actions'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(any(m.startswith('textual') for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
