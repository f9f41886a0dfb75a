"""Who the tests act as.

Tests act as alice, bob and others through ``HALOTERM_OPERATOR``; haloterm honours it
only for an account the config lets act as others, so every test config grants the OS
user running the tests ``act_as = ["*"]``.
"""

from __future__ import annotations

from haloterm.config import Operator, os_user

HARNESS_TOML = f'[operators.{os_user()}]\nact_as = ["*"]\n'
"""The grant, as config file text."""


def with_harness(**operators: Operator) -> dict[str, Operator]:
    """``operators`` plus the grant for the OS user running the tests."""
    return {os_user(): Operator(act_as=["*"]), **operators}
