"""Logging to a file under the user's state dir, never to the terminal the console uses.

Every record passes through one process-wide :class:`SecretMasker`; the engine adds
each run's secret values to it, so a secret never reaches the log file in clear.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from haloterm.config import state_dir
from haloterm.masking import MaskingFilter, SecretMasker

LOG_MASKER = SecretMasker()
"""Masks every secret haloterm has seen in this process, in every log record."""

_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"


def log_file() -> Path:
    return state_dir() / "haloterm.log"


def setup_logging(level: str = "INFO", *, stderr: bool = False) -> Path:
    """Send haloterm's logs to its log file (and to stderr for headless commands).

    Args:
        level: the root level name (``DEBUG``, ``INFO`` ...).
        stderr: also log to stderr; only for commands that draw no screen.

    Returns:
        The log file's path.
    """
    path = log_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    teardown_logging()
    root = logging.getLogger()
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(
            path, maxBytes=10 * 1024 * 1024, backupCount=3, encoding="utf-8"
        )
    ]
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.addFilter(MaskingFilter(LOG_MASKER))
        handler._haloterm = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("asyncssh", "httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
    return path


def teardown_logging() -> None:
    """Remove and close the handlers :func:`setup_logging` added."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_haloterm", False):
            root.removeHandler(handler)
            handler.close()
