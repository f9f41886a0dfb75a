"""Settings from ``haloterm.toml`` and ``HALOTERM_*`` variables; paths from
platformdirs.

Lookup order for each setting: the command line, then the environment, then the config
file, then the default. The config file lives at ``<user config dir>/haloterm.toml``
unless ``HALOTERM_CONFIG`` names another.
"""

from __future__ import annotations

import os
import pwd
import tomllib
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

APP = "haloterm"


class ConfigError(ValueError):
    """The config file cannot be read; the message names the file and the field."""


class Operator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[str] = Field(default_factory=list)
    act_as: list[str] = Field(default_factory=list)
    """Operators this account may act as by setting ``HALOTERM_OPERATOR`` (a shared
    service account, a test harness); ``"*"`` means any. Empty for people."""


class InventoryHost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = None
    port: int | None = None
    user: str | None = None
    tags: list[str] = Field(default_factory=list)


class NotifyChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    """``slack``, ``teams``, ``mattermost``, ``webhook``, ``email`` or ``console``."""
    url: str | None = None
    url_secret: str | None = None
    """Name of a secret holding the webhook URL, when the URL itself is a credential."""
    to: list[str] = Field(default_factory=list)
    sender: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password_secret: str | None = None
    starttls: bool = True


class GenericIntake(BaseModel):
    """How ``/hooks/generic`` bodies become tickets: dotted paths into the JSON."""

    model_config = ConfigDict(extra="forbid")
    title: str = "title"
    key: str | None = None
    """A unique key of the source; replays with the same key update one ticket."""
    priority: str | None = None
    """``P1``..``P4``, or a severity (``critical``, ``warning`` ...)."""
    default_priority: str = "P3"
    description: str | None = None
    category: str | None = None
    status: str | None = None
    """A value of ``resolved``, ``ok`` or ``closed`` resolves the ticket."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Ticket field name to dotted path."""


class Settings(BaseModel):
    """Everything haloterm reads from its config file."""

    model_config = ConfigDict(extra="forbid")

    db: Path | None = None
    """The store; default ``<user data dir>/haloterm.db``."""
    secrets_file: Path | None = None
    """A TOML file of ``name = "value"`` secrets, readable only by its owner."""
    operators: dict[str, Operator] = Field(default_factory=dict)
    """Operators and their roles, keyed by user name."""
    inventory: dict[str, InventoryHost] = Field(default_factory=dict)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    notify: dict[str, NotifyChannel] = Field(default_factory=dict)
    intake_token_secret: str | None = None
    intake_pagerduty_secret: str | None = None
    """Name of the secret holding the PagerDuty webhook signing secret."""
    intake_generic: GenericIntake | None = None
    """The mapping of ``/hooks/generic``; without it that endpoint answers 404."""
    intake_max_body: int = 1024 * 1024
    """Largest intake request body, in bytes."""
    log_level: str = "INFO"
    max_child_depth: int = 10
    output_cap_bytes: int = 256 * 1024 * 1024
    """Largest spool file kept per step; output beyond it is counted, not kept."""
    stored_tail_lines: int = 5000
    """Lines of each step's output kept in the store beyond the first ones."""

    # Filled in at load time, not from the file.
    source: Path | None = Field(default=None, exclude=True)

    def roles_of(self, user: str) -> set[str]:
        op = self.operators.get(user)
        return set(op.roles) if op else set()


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP))


def state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP))


def config_path() -> Path:
    env = os.environ.get("HALOTERM_CONFIG")
    return Path(env) if env else config_dir() / "haloterm.toml"


def load_settings(path: Path | None = None) -> Settings:
    """Read the config file (missing is fine) and apply ``HALOTERM_*`` overrides.

    Raises:
        ConfigError: the file is not valid TOML or has a field that does not fit.
    """
    path = path or config_path()
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    settings.source = path if path.exists() else None
    if db := os.environ.get("HALOTERM_DB"):
        settings.db = Path(db)
    if secrets := os.environ.get("HALOTERM_SECRETS_FILE"):
        settings.secrets_file = Path(secrets)
    if level := os.environ.get("HALOTERM_LOG_LEVEL"):
        settings.log_level = level
    return settings


def db_path(settings: Settings, override: Path | None = None) -> Path:
    if override is not None:
        return override
    return settings.db or data_dir() / "haloterm.db"


def os_user() -> str:
    """The name of the account this process runs as, from the password database.

    Not ``$USER`` or ``$LOGNAME``: anyone can set those.
    """
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def current_operator(settings: Settings) -> str:
    """Who is acting: the OS user, or the operator named by ``HALOTERM_OPERATOR`` when
    the config lets the OS user act as that operator (``act_as``).

    Raises:
        ConfigError: ``HALOTERM_OPERATOR`` names someone the OS user may not act as.
    """
    user = os_user()
    asked = os.environ.get("HALOTERM_OPERATOR", "").strip()
    if not asked or asked == user:
        return user
    grant = settings.operators.get(user)
    if grant and (asked in grant.act_as or "*" in grant.act_as):
        return asked
    where = settings.source or config_path()
    if grant and grant.act_as:
        may = ", ".join(grant.act_as)
        raise ConfigError(
            f"HALOTERM_OPERATOR={asked}: {user} may act as {may} only "
            f"(operators.{user}.act_as in {where})"
        )
    raise ConfigError(
        f"HALOTERM_OPERATOR={asked}: {user} may not act as another operator "
        f"(an account that may needs operators.{user}.act_as in {where})"
    )


def load_secrets(settings: Settings) -> dict[str, str]:
    """Secrets from the secrets file, then ``HALOTERM_SECRET_<NAME>`` variables.

    Raises:
        ConfigError: the secrets file is unreadable or is readable by other users.
    """
    secrets: dict[str, str] = {}
    path = settings.secrets_file or config_dir() / "secrets.toml"
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigError(
                f"{path}: secrets file must not be readable by others (chmod 600)"
            )
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        secrets.update({str(k): str(v) for k, v in data.items()})
    prefix = "HALOTERM_SECRET_"
    for key, value in os.environ.items():
        if key.startswith(prefix) and value:
            secrets[key[len(prefix) :].lower()] = value
    return secrets
