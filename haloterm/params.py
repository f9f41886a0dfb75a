"""Checking and converting runbook param values."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from haloterm.models import Param, Runbook

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class ParamError(ValueError):
    """One or more params are missing or invalid; ``problems`` maps name to message."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        text = "; ".join(f"params.{k}: {v}" for k, v in problems.items())
        super().__init__(text)


def coerce_param(param: Param, value: Any, *, strict: bool = False) -> Any:
    """Check one value against its param and return it in the param's type.

    Args:
        param: the param's definition.
        value: the value given.
        strict: values from a file must already have the right type (a string param
            given ``1.10`` is an error: YAML read it as a number); values typed by
            people (``strict=False``) are converted from text.

    Returns:
        The value, converted.

    Raises:
        ValueError: the value does not fit, with a message that says why.
    """
    from haloterm.models import ParamType

    kind = param.type
    if kind in (ParamType.STRING, ParamType.SECRET, ParamType.CHOICE):
        result: Any = _as_text(value, strict)
    elif kind is ParamType.BOOLEAN:
        result = _as_bool(value, strict)
    elif kind is ParamType.INTEGER:
        result = _as_int(value, strict)
    else:
        result = _as_number(value, strict)

    if kind is ParamType.CHOICE and param.choices and result not in param.choices:
        raise ValueError(f"{result!r} is not one of {', '.join(param.choices)}")
    if isinstance(result, int | float) and not isinstance(result, bool):
        if param.min is not None and result < param.min:
            raise ValueError(f"{result} is below the minimum {param.min:g}")
        if param.max is not None and result > param.max:
            raise ValueError(f"{result} is above the maximum {param.max:g}")
    if param.pattern is not None and isinstance(result, str):
        if not re.fullmatch(param.pattern, result):
            shown = "the value" if kind is ParamType.SECRET else repr(result)
            raise ValueError(f"{shown} does not match the pattern {param.pattern!r}")
    return result


def _as_text(value: Any, strict: bool) -> str:
    if isinstance(value, str):
        return value
    if strict or isinstance(value, dict | list):
        raise ValueError(
            f"must be a string, but the file holds the {type(value).__name__} "
            f"{value!r} (YAML reads 1.10 as 1.1, NO as false, 0755 as 493: quote it)"
        )
    return str(value)


def _as_bool(value: Any, strict: bool) -> bool:
    if isinstance(value, bool):
        return value
    if not strict and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError(f"must be true or false, not {value!r}")


def _as_int(value: Any, strict: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not strict and isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            pass
    raise ValueError(f"must be a whole number, not {value!r}")


def _as_number(value: Any, strict: bool) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif not strict and isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"must be a number, not {value!r}") from None
    else:
        raise ValueError(f"must be a number, not {value!r}")
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def resolve_params(runbook: Runbook, given: Mapping[str, Any]) -> dict[str, Any]:
    """Apply defaults and check every param of a run, reporting all problems at once.

    Args:
        runbook: the runbook to run.
        given: the values supplied (text from people, or typed values).

    Returns:
        Every declared param with a value (``None`` for optional ones left unset).

    Raises:
        ParamError: unknown names, missing required values, or values that do not fit.
    """
    problems: dict[str, str] = {}
    for name in given:
        if name not in runbook.params:
            known = ", ".join(sorted(runbook.params)) or "none"
            problems[name] = f"unknown param (this runbook takes: {known})"
    values: dict[str, Any] = {}
    for name, param in runbook.params.items():
        raw = given.get(name)
        if raw is None or raw == "" and param.default is not None:
            raw = param.default
        if raw is None:
            if param.required:
                problems[name] = "required, and no value was given"
            values[name] = None
            continue
        try:
            values[name] = coerce_param(param, raw)
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise ParamError(problems)
    return values
