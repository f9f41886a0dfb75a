"""The ``cli`` fixture: the command line on a private store, where bob leads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import Cli
from tests.identity import HARNESS_TOML


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    config = tmp_path / "haloterm.toml"
    config.write_text(
        HARNESS_TOML + '[operators.bob]\nroles = ["lead"]\n', encoding="utf-8"
    )
    runner = Cli(tmp_path)
    runner.env["HALOTERM_CONFIG"] = str(config)
    return runner
