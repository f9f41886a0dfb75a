"""Fixtures for the runbook format tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from haloterm.plugins.registry import ActionRegistry
from tests.format.actions import ALL

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def registry() -> ActionRegistry:
    """A registry of the small test actions: shell, wait, http and runbook."""
    return ActionRegistry.from_classes(ALL)
