"""Checking read runbook data: pydantic models, step ids, actions and templates."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from haloterm.engine.templates import (
    ROOT_NAMES,
    Renderer,
    TemplateError,
    is_templated,
    template_references,
    template_roots,
)
from haloterm.models import STEP_ID, Param, Runbook, RunRunbook
from haloterm.params import coerce_param

if TYPE_CHECKING:
    from haloterm.plugins.base import Action
    from haloterm.plugins.registry import ActionRegistry

from haloterm.loader.problems import Loc, describe_value, did_you_mean, split_path
from haloterm.loader.reading import Document

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------ checking


class Checker:
    """Validates one read document and collects every located problem."""

    def __init__(
        self, doc: Document, registry: ActionRegistry, renderer: Renderer
    ) -> None:
        self.doc = doc
        self.registry = registry
        self.renderer = renderer
        self.reported: set[Loc] = set()

    def add(self, loc: Loc, message: str, *, key: bool = False) -> None:
        mark, _, _ = self.doc.locate(loc, key=key)
        self.doc.problem(mark, loc, message)
        self.reported.add(loc)

    def run(self) -> Runbook | None:
        data = self.doc.data
        runbook: Runbook | None = None
        try:
            runbook = Runbook.model_validate(data)
        except ValidationError as exc:
            errors = [self._relocate_default(err) for err in exc.errors()]
            self.errors(errors, (), Runbook)
        steps = data.get("steps")
        steps = steps if isinstance(steps, list) else []
        ids = self._step_ids(steps)
        params = data.get("params")
        declared = list(params) if isinstance(params, dict) else []
        for index, step in enumerate(steps):
            if isinstance(step, dict):
                self._step(index, step, ids, declared)
        self._triggers(data.get("triggers"), ids, declared)
        self._run_notify(data.get("notify"), ids, declared)
        self._ambiguous()
        return runbook

    # -------------------------------------------------------------- pydantic

    def errors(
        self,
        errors: list[Any],
        base: Loc,
        model: type[BaseModel],
        *,
        skip_templated: bool = False,
    ) -> None:
        """Report pydantic errors whose ``loc`` is relative to ``base``."""
        unions: dict[Loc, dict[Any, list[tuple[Loc, Any]]]] = {}
        for err in errors:
            loc = base + tuple(err["loc"])
            depth = self._depth(loc)
            is_missing = err["type"] == "missing" and depth == len(loc) - 1
            if depth < len(base) or depth == len(loc) or is_missing:
                self._error(loc, err, base, model, skip_templated)
                continue
            rest = loc[:depth] + loc[depth + 1 :]
            unions.setdefault(loc[:depth], {}).setdefault(loc[depth], []).append(
                (rest, err)
            )
        for prefix, branches in unions.items():
            self._union(prefix, branches, base, model, skip_templated)

    def _depth(self, loc: Loc) -> int:
        node = self.doc.data
        for depth, part in enumerate(loc):
            if isinstance(node, dict) and isinstance(part, str) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return depth
        return len(loc)

    def _union(
        self,
        prefix: Loc,
        branches: dict[Any, list[tuple[Loc, Any]]],
        base: Loc,
        model: type[BaseModel],
        skip_templated: bool,
    ) -> None:
        def score(errs: list[tuple[Loc, Any]]) -> int:
            return sum(
                10 if rest == prefix else int(err["type"] in _SHAPE_ERRORS)
                for rest, err in errs
            )

        best = min(branches.values(), key=score)
        if score(best) < 10:
            self.errors(
                [{**err, "loc": rest[len(base) :]} for rest, err in best],
                base,
                model,
                skip_templated=skip_templated,
            )
            return
        _, value, _ = self.doc.locate(prefix)
        if skip_templated and len(prefix) > len(base) and is_templated(value):
            return
        if prefix and prefix[-1] == "on_failure":
            message = (
                "must be `abort`, `continue`, `{goto: <step id>}` or "
                "`{run: <runbook name>}`"
            )
        else:
            messages = [_friendly(err) for errs in branches.values() for _, err in errs]
            message = ", or ".join(dict.fromkeys(messages))
        self.add(prefix, message)

    def _error(
        self,
        loc: Loc,
        err: Any,
        base: Loc,
        model: type[BaseModel],
        skip_templated: bool,
    ) -> None:
        kind = err["type"]
        depth = self._depth(loc)
        _, value, slot = self.doc.locate(loc[:depth])
        if depth >= len(base):
            # Union member names in a nested ``loc`` are not fields: drop them.
            loc = loc[:depth] + (loc[-1:] if kind == "missing" else ())
        if (
            skip_templated
            and kind not in _SHAPE_ERRORS
            and depth > len(base)
            and is_templated(value)
        ):
            return
        if kind == "missing":
            message = "field required"
        elif kind == "extra_forbidden":
            fields = _model_fields(model, loc[len(base) : -1])
            message = "unknown field" + did_you_mean(str(loc[-1]), fields)
        else:
            message = _friendly(err)
        if slot is not None and slot.plain is not None and depth == len(loc):
            if kind == "string_type" or message.startswith("must be a string"):
                how = f" ({slot.ambiguous})" if slot.ambiguous else ""
                message = (
                    f"must be a string, but the unquoted `{slot.plain}` is read as "
                    f"{describe_value(value)}{how}: quote it"
                )
            elif (
                slot.ambiguous
                and kind != "extra_forbidden"
                and (slot.plain not in message)
            ):
                message += f" (the unquoted `{slot.plain}` is read as {value!r})"
        self.add(loc, message, key=kind == "extra_forbidden")

    def _relocate_default(self, err: Any) -> Any:
        """Move a param's default error from ``params.x`` to ``params.x.default``."""
        loc = tuple(err["loc"])
        if len(loc) != 2 or loc[0] != "params" or err["type"] != "value_error":
            return err
        params = self.doc.data.get("params")
        raw = params.get(loc[1]) if isinstance(params, dict) else None
        if not isinstance(raw, dict) or "default" not in raw:
            return err
        message = _friendly(err)
        if "default" in message or message == _default_problem(raw):
            return {**err, "loc": (*loc, "default")}
        return err

    # -------------------------------------------------------------- cross-checks

    def _step_ids(self, steps: list[Any]) -> list[str]:
        first: dict[str, int] = {}
        for index, step in enumerate(steps):
            step_id = step.get("id") if isinstance(step, dict) else None
            if not isinstance(step_id, str):
                continue
            if step_id in first:
                line = self.doc.locate(("steps", first[step_id], "id"))[0][0]
                self.add(
                    ("steps", index, "id"),
                    f"duplicate step id `{step_id}` (first at line {line})",
                )
            else:
                first[step_id] = index
        return list(first)

    def _step(
        self, index: int, step: dict[str, Any], ids: list[str], declared: list[str]
    ) -> None:
        here: Loc = ("steps", index)
        on_failure = step.get("on_failure")
        if isinstance(on_failure, dict) and isinstance(on_failure.get("goto"), str):
            target = on_failure["goto"]
            if target not in ids and STEP_ID.fullmatch(target):
                self.add(
                    (*here, "on_failure", "goto"),
                    f"`{target}` is not a step of this runbook"
                    + did_you_mean(target, ids),
                )
        name = step.get("action")
        inputs = step.get("with", {})
        if isinstance(name, str):
            self._action(here, name, inputs)
        for key in ("name", "with"):
            if key in step:
                self._templates((*here, key), step[key], ids, declared)
        when = step.get("when")
        if isinstance(when, str):
            self._template((*here, "when"), when, ids, declared, expression=True)

    def _action(self, here: Loc, name: str, inputs: Any) -> None:
        if name not in self.registry:
            from haloterm.plugins.registry import UnknownAction

            unknown = UnknownAction(
                name, self.registry.names(), self.registry.broken_reason(name)
            )
            self.add((*here, "action"), str(unknown))
            return
        if not isinstance(inputs, dict):
            return
        action = self.registry.get(name)
        base: Loc = (*here, "with")
        try:
            action.Inputs.model_validate(inputs)
        except ValidationError as exc:
            self.errors(exc.errors(), base, action.Inputs, skip_templated=True)
        for path, message in _static_check(action, inputs):
            self.add(base + split_path(path), message)

    def _triggers(self, triggers: Any, ids: list[str], declared: list[str]) -> None:
        if not isinstance(triggers, list):
            return
        for index, trigger in enumerate(triggers):
            if not isinstance(trigger, dict):
                continue
            here: Loc = ("triggers", index)
            params = trigger.get("params")
            if isinstance(params, dict):
                for key in params:
                    if key not in declared:
                        self.add(
                            (*here, "params", key),
                            f"`{key}` is not a param of this runbook"
                            + did_you_mean(key, declared),
                            key=True,
                        )
                self._templates((*here, "params"), params, ids, declared)
            if isinstance(trigger.get("dedupe"), str):
                self._template((*here, "dedupe"), trigger["dedupe"], ids, declared)

    def _run_notify(self, entries: Any, ids: list[str], declared: list[str]) -> None:
        """Runbook-level ``notify``: templates as in steps, channels as the action."""
        if not isinstance(entries, list):
            return
        action = self.registry.get("notify") if "notify" in self.registry else None
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            here: Loc = ("notify", index)
            for key in ("message", "title"):
                if key in entry:
                    self._templates((*here, key), entry[key], ids, declared)
            channel = entry.get("channel")
            if action is not None and isinstance(channel, str):
                for path, message in _static_check(action, {"channel": channel}):
                    self.add(here + split_path(path), message)

    # -------------------------------------------------------------- templates

    def _templates(
        self, loc: Loc, value: Any, ids: list[str], declared: list[str]
    ) -> None:
        if isinstance(value, str):
            if is_templated(value):
                self._template(loc, value, ids, declared)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._templates((*loc, key), item, ids, declared)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self._templates((*loc, index), item, ids, declared)

    def _template(
        self,
        loc: Loc,
        text: str,
        ids: list[str],
        declared: list[str],
        *,
        expression: bool = False,
    ) -> None:
        bare = expression and not is_templated(text)
        errors = (
            self.renderer.check_expression(text) if bare else self.renderer.check(text)
        )
        if errors:
            self.add(loc, f"template {errors[0]}")
            return
        template = "{{ " + text + " }}" if bare else text
        try:
            for message in _name_problems(
                template, ids, declared, self.renderer.globals
            ):
                self.add(loc, message)
        except TemplateError as exc:
            self.add(loc, exc.error)

    def _ambiguous(self) -> None:
        for loc, slot in self.doc.walk():
            if slot.ambiguous and slot.plain and loc not in self.reported:
                value = self.doc.locate(loc)[1]
                self.add(
                    loc,
                    f"the unquoted `{slot.plain}` is read as {value!r} "
                    f"({slot.ambiguous}) by YAML 1.1 but differently by YAML 1.2: "
                    "quote it, or write the value you mean plainly",
                )


_SHAPE_ERRORS = frozenset({"missing", "extra_forbidden"})


def _friendly(err: Any) -> str:
    message = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    message = message.replace("Input should be", "must be", 1)
    return message[:1].lower() + message[1:]


def _default_problem(raw: dict[str, Any]) -> str | None:
    """Why a param's default does not fit its own definition, if it does not."""
    try:
        param = Param.model_validate({k: v for k, v in raw.items() if k != "default"})
        coerce_param(param, raw["default"], strict=True)
    except (ValidationError, ValueError) as exc:
        return None if isinstance(exc, ValidationError) else str(exc)
    return None


def _static_check(action: Action, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        return list(action.static_check(inputs))
    except Exception as exc:
        logger.warning("static check of action %s failed: %s", action.name, exc)
        return [("", f"the `{action.name}` action's check failed: {exc}")]


def _name_problems(
    template: str, ids: list[str], declared: list[str], extra: frozenset[str]
) -> list[str]:
    problems: list[str] = []
    allowed = ROOT_NAMES | extra
    for name in sorted(template_roots(template) - allowed):
        problems.append(
            f"template reads the unknown name `{name}` "
            f"(use params, ticket, steps, runbook or execution)"
            + did_you_mean(name, sorted(ROOT_NAMES))
        )
    for name in sorted(template_references(template, "params") - set(declared)):
        problems.append(
            f"`params.{name}` is not a declared param" + did_you_mean(name, declared)
        )
    for name in sorted(template_references(template, "steps") - set(ids)):
        hyphenated = [i for i in ids if i.startswith(name + "-")]
        hint = (
            f"; write steps['{hyphenated[0]}'] for an id with a `-`"
            if hyphenated
            else did_you_mean(name, ids)
        )
        problems.append(f"`steps.{name}` is not a step of this runbook" + hint)
    return problems


def _model_fields(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names (aliases where set) of the model found at ``loc``."""
    target = _model_at(model, loc)
    if target is None:
        return []
    return [info.alias or name for name, info in target.model_fields.items()]


def _model_at(tp: Any, loc: Loc) -> type[BaseModel] | None:
    from typing import Annotated, Union, get_args, get_origin

    origin = get_origin(tp)
    if origin is Annotated:
        return _model_at(get_args(tp)[0], loc)
    if origin is Union or type(tp).__name__ == "UnionType":
        for member in get_args(tp):
            found = _model_at(member, loc)
            if found is not None:
                return found
        return None
    if not loc:
        return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None
    part, rest = loc[0], loc[1:]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, info in tp.model_fields.items():
            if part in (name, info.alias):
                return _model_at(info.annotation, rest)
        return None
    if origin in (list, tuple) and isinstance(part, int):
        return _model_at(get_args(tp)[0], rest)
    if origin is dict:
        return _model_at(get_args(tp)[1], rest)
    return None


def child_references(
    runbook: Runbook, registry: ActionRegistry
) -> list[tuple[str, str]]:
    """The runbooks a runbook may start as children, known before it runs.

    Both ``runbook`` steps with a literal name and ``on_failure: {run: ...}`` count.

    Returns:
        ``(step id, runbook name)`` pairs, in step order.
    """
    found: list[tuple[str, str]] = []
    for step in runbook.steps:
        if step.action in registry:
            try:
                names = registry.get(step.action).child_runbooks(step.with_)
            except Exception as exc:
                logger.warning("child_runbooks of %s failed: %s", step.action, exc)
                names = []
            found.extend((step.id, name) for name in names)
        if isinstance(step.on_failure, RunRunbook):
            found.append((step.id, step.on_failure.run))
    return found
