"""Fixtures every test gets: private config, data and state dirs, a clean env."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.identity import HARNESS_TOML
from tests.servers import (  # noqa: F401 - loopback server fixtures for every test
    http_server,
    http_server_b,
    http_server_b_session,
    http_server_session,
    https_server,
    https_server_session,
    smtp_server,
    smtp_tls_server,
    tls_ca,
)

_CLEARED = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point haloterm's dirs at tmp_path, clear proxies and HALOTERM_* variables, and
    act as alice (see :mod:`tests.identity`)."""
    for key in list(os.environ):
        if key.startswith("HALOTERM_") or key.lower() in _CLEARED:
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    for name in ("config", "data", "state", "cache"):
        (home / name).mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    (home / "config" / "haloterm").mkdir()
    (home / "config" / "haloterm" / "haloterm.toml").write_text(
        HARNESS_TOML, encoding="utf-8"
    )
    monkeypatch.setenv("HALOTERM_OPERATOR", "alice")
    yield
