"""Who is acting: the OS user, or HALOTERM_OPERATOR where the config grants it."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from haloterm.config import ConfigError, Operator, Settings, current_operator, os_user

ME = pwd.getpwuid(os.geteuid()).pw_name


def test_without_the_variable_the_operator_is_the_os_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HALOTERM_OPERATOR")
    monkeypatch.setenv("USER", "bob")
    monkeypatch.setenv("LOGNAME", "bob")
    assert os_user() == ME
    assert current_operator(Settings()) == ME


def test_naming_yourself_needs_no_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALOTERM_OPERATOR", ME)
    assert current_operator(Settings()) == ME


def test_acting_as_another_operator_is_refused_without_a_grant(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HALOTERM_OPERATOR", "bob")
    settings = Settings(operators={"bob": Operator(roles=["lead"])})
    settings.source = tmp_path / "haloterm.toml"
    with pytest.raises(ConfigError) as caught:
        current_operator(settings)
    message = str(caught.value)
    assert "HALOTERM_OPERATOR=bob" in message
    assert f"operators.{ME}.act_as" in message
    assert str(settings.source) in message


def test_a_grant_names_whom_an_account_may_act_as(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(operators={ME: Operator(act_as=["bob"])})
    monkeypatch.setenv("HALOTERM_OPERATOR", "bob")
    assert current_operator(settings) == "bob"
    monkeypatch.setenv("HALOTERM_OPERATOR", "carol")
    with pytest.raises(
        ConfigError, match=f"HALOTERM_OPERATOR=carol: {ME} may act as bob only"
    ):
        current_operator(settings)


def test_the_command_line_refuses_an_ungranted_operator(tmp_path: Path) -> None:
    config = tmp_path / "haloterm.toml"
    config.write_text('[operators.bob]\nroles = ["lead"]\n', encoding="utf-8")
    db = tmp_path / "store.db"
    env = {
        **os.environ,
        "HALOTERM_CONFIG": str(config),
        "HALOTERM_DB": str(db),
        "HALOTERM_OPERATOR": "bob",
    }
    done = subprocess.run(
        [sys.executable, "-m", "haloterm", "approvals"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode != 0
    assert "HALOTERM_OPERATOR=bob" in done.stderr
    assert "may not act as another operator" in done.stderr
    assert not db.exists()


def test_a_role_change_in_the_config_reaches_a_running_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken away or granted, a role counts from the next heartbeat on."""
    from haloterm.config import load_settings
    from haloterm.services import Services

    config = tmp_path / "haloterm.toml"
    config.write_text('[operators.bob]\nroles = ["lead"]\n', encoding="utf-8")
    monkeypatch.setenv("HALOTERM_OPERATOR", ME)
    services = Services.open(
        tmp_path / "s.db", settings=load_settings(config), seed=False
    )
    try:
        assert services.engine.settings.roles_of("bob") == {"lead"}
        assert not services.reload_operators()  # nothing changed yet
        config.write_text('[operators.bob]\nroles = ["oncall"]\n', encoding="utf-8")
        assert services.reload_operators()
        assert services.engine.settings.roles_of("bob") == {"oncall"}
        config.write_text("[operators.bob\n", encoding="utf-8")  # broken
        assert not services.reload_operators()
        assert services.engine.settings.roles_of("bob") == {"oncall"}
    finally:
        services.store.close()
