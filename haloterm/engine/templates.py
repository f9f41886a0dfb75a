"""Sandboxed rendering of the ``{{ ... }}`` templates in runbook values.

Templates run in jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment` with
:class:`~jinja2.StrictUndefined`: an undefined name is an error, never an empty
string, and attribute escapes such as ``''.__class__.__mro__`` are refused.
Rendering is bounded: ``range`` shares an iteration budget per render, string and list
repetition and powers are capped, and the rendered text has a size limit.

Two rules make substitution safe where it matters:

* In command fields (``command=True``) every substituted value is quoted for the shell
  context it lands in, as read from the rendered command
  (:mod:`haloterm.engine.shellquote`): :func:`shlex.quote` as a plain word, escaped
  inside double, single and ``$'...'`` quotes and in here-documents, one line in a
  comment, unless the author passed it through the ``raw`` filter. Where no quoting
  holds (inside backticks, right after a backslash) the render is refused. A ticket
  title such as ``$(touch /tmp/x)`` stays literal text wherever it is placed.
* An expression that renders to none inside a string is an error, never ``None``.
* A secret param arrives as a :class:`SecretValue`. In a command it never lands in the
  text: it becomes ``"$HALOTERM_SECRET_<NAME>"`` and the real value is returned in
  :attr:`Rendered.secret_env`, so it reaches the process through its environment and
  never through argv. Elsewhere (an HTTP header, say) it renders to its real value and
  the engine masks output separately. Used inside an expression (``~``, filters) it
  degrades to ``******``.
"""

from __future__ import annotations

import contextvars
import functools
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from haloterm.engine import shellquote

MASK = "******"
ROOT_NAMES = frozenset({"params", "ticket", "steps", "runbook", "execution"})
"""The names a template may start from (besides jinja's globals and loop locals)."""

MAX_OUTPUT = 1024 * 1024
"""Characters one rendered string may hold."""
MAX_ITERATIONS = 100_000
"""``range`` steps one render may take, across all loops."""
MAX_SEQUENCE = 100_000
"""Items (or characters) a ``*`` repetition may produce."""
MAX_POWER_BITS = 4096
"""Bits an integer ``**`` result may have."""

_MARKERS = ("{{", "{%", "{#")
_FALSE_WORDS = frozenset({"false", "no", "off", "0", ""})


class TemplateError(ValueError):
    """A template failed to parse or render; the message names the template."""

    def __init__(self, template: str, error: str) -> None:
        self.template = template
        self.error = error
        super().__init__(f"template {_shorten(template)!r}: {error}")


class SecretValue:
    """A secret param's value; ``str()`` gives ``******`` so it cannot slip out.

    Attributes:
        name: the param's name (it names the environment variable in commands).
        value: the real value.
    """

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"SecretValue({self.name!r}, {MASK!r})"

    def __format__(self, spec: str) -> str:
        return MASK

    @property
    def env_name(self) -> str:
        """The variable that carries it to a process: ``HALOTERM_SECRET_<NAME>``."""
        return "HALOTERM_SECRET_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())


class Raw(str):
    """Text that goes into a command unquoted: what the ``raw`` filter returns."""

    __slots__ = ()


@dataclass
class Rendered:
    """The result of :meth:`Renderer.render`.

    Attributes:
        value: the rendered value (same shape as the input).
        secret_env: environment variables a command needs for the secrets it uses.
        value_env: environment variables a command needs for the other values it
            refers to.
    """

    value: Any
    secret_env: dict[str, str] = field(default_factory=dict)
    value_env: dict[str, str] = field(default_factory=dict)
    """The values a command refers to as ``${HALOTERM_VALUE_<n>}`` (not secret)."""


_VALUE_REF = re.compile(r"\$\{(HALOTERM_VALUE_\d+)\}")


def shown_with_values(rendered: Rendered) -> Any:
    """The rendered value as people read it: each ``${HALOTERM_VALUE_<n>}`` a
    command refers to, replaced by the value it holds (for an approver's preview;
    never run). Secret references stay references."""

    def show(item: Any) -> Any:
        if isinstance(item, str):
            return _VALUE_REF.sub(
                lambda m: rendered.value_env.get(m.group(1), m.group(0)), item
            )
        if isinstance(item, Mapping):
            return {k: show(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [show(v) for v in item]
        return item

    return show(rendered.value)


def is_templated(value: Any) -> bool:
    """Whether a value is, or holds, a string with template markup."""
    if isinstance(value, str):
        return any(marker in value for marker in _MARKERS)
    if isinstance(value, Mapping):
        return any(is_templated(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_templated(v) for v in value)
    return False


def wrap_secrets(params: Mapping[str, Any], secret_names: set[str]) -> dict[str, Any]:
    """Return params with each secret's value wrapped in a :class:`SecretValue`."""
    return {
        name: SecretValue(name, str(value))
        if name in secret_names and value is not None
        else value
        for name, value in params.items()
    }


# ----------------------------------------------------------------- the sandbox

_secrets: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "haloterm_template_secrets", default=None
)
_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "haloterm_template_budget", default=None
)


def _raw_text(value: Any) -> Any:
    return value


_values: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "haloterm_command_values", default=None
)
_slots: contextvars.ContextVar[shellquote.Slots | None] = contextvars.ContextVar(
    "haloterm_command_slots", default=None
)


def _raw_command(value: Any) -> Raw:
    if isinstance(value, SecretValue):
        return Raw(f'"${value.env_name}"') if _collect(value) else Raw(MASK)
    return Raw(value)


def _collect(secret: SecretValue) -> bool:
    collector = _secrets.get()
    if collector is None:
        return False
    collector[secret.env_name] = secret.value
    return True


def _budgeted_range(*args: int) -> range:
    steps = range(*args)
    budget = _budget.get()
    if budget is not None:
        budget[0] -= len(steps)
        if budget[0] < 0:
            raise SecurityError(
                f"range() would run past {MAX_ITERATIONS} steps in one render"
            )
    return steps


class NoValueError(ValueError):
    """An expression inside a string rendered to none (a param left unset)."""


_NO_VALUE = (
    "an expression has no value (an optional param left unset, or a field that is "
    "empty): give the param a default, or guard it with {% if ... %}"
)


def _finalize_text(value: Any) -> Any:
    if value is None:
        raise NoValueError(_NO_VALUE)
    if isinstance(value, SecretValue):
        return value.value
    return value


def _finalize_command(value: Any) -> str:
    """Raw text goes in as it is; any other value stands as a placeholder until the
    rendered command shows where it landed (see :mod:`shellquote`)."""
    if value is None:
        raise NoValueError(_NO_VALUE)
    if isinstance(value, Raw):
        return str(value)
    slots = _slots.get()
    if slots is None:
        raise SecurityError("a command value rendered outside a command render")
    return slots.add(value)


def _quote_for(value: Any, context: str) -> str:
    """One value, put in the command where it landed.

    The value itself never becomes shell text: the command refers to an
    environment variable that holds it, written for the context (``"${V}"`` as a
    word, ``${V}`` inside double quotes or a here-document, closing and reopening
    single quotes). A wrong guess at the context can then only make the command
    say something else, never run the value.
    """
    if context == shellquote.QUOTED_HEREDOC:
        raise SecurityError(
            "a value cannot go in a quoted here-document (nothing expands there); "
            "use an unquoted one"
        )
    if context == shellquote.ESCAPED:
        raise SecurityError(
            "a value right after a backslash cannot be quoted safely: drop the "
            "backslash"
        )
    if context == shellquote.ARITHMETIC:
        # Bash evaluates what a variable holds in arithmetic, so only a number
        # goes there, written out.
        text = _text_of(value.value if isinstance(value, SecretValue) else value)
        if isinstance(value, SecretValue) or not _INTEGER.fullmatch(text.strip()):
            raise SecurityError(
                "only a whole number may go in shell arithmetic $(( )): make the "
                "param an integer"
            )
        return text.strip()
    name = _reference(value)
    if context in (shellquote.DOUBLE, shellquote.HEREDOC, shellquote.COMMENT):
        return "${" + name + "}"
    if context == shellquote.SINGLE:
        return "'\"${" + name + "}\"'"
    if context == shellquote.ANSI:
        return "'\"${" + name + "}\"$'"
    return '"${' + name + '}"'


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _reference(value: Any) -> str:
    """The environment variable that carries a value to the command."""
    if isinstance(value, SecretValue):
        if not _collect(value):
            raise SecurityError("a secret used outside a command render")
        return value.env_name
    values = _values.get()
    if values is None:
        raise SecurityError("a command value rendered outside a command render")
    text = _text_of(value)
    name = f"HALOTERM_VALUE_{len(values) + 1}"
    values[name] = text
    return name


def _text_of(value: Any) -> str:
    if value is None:
        raise NoValueError(_NO_VALUE)
    return str(value)


class _Sandbox(SandboxedEnvironment):
    """The sandbox, with bounded arithmetic and no attribute access on secrets."""

    intercepted_binops = frozenset({"*", "**"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, SecretValue):
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Keys win over dict methods: a step named `get` or `items` must read as
        # `steps.get.status`, not as the bound method.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(
        self, context: jinja2.runtime.Context, operator_: str, left: Any, right: Any
    ) -> Any:
        if operator_ == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
            return operator.mul(left, right)
        if operator_ == "**":
            _check_power(left, right)
            return operator.pow(left, right)
        return super().call_binop(context, operator_, left, right)


def _check_repeat(seq: Any, times: Any) -> None:
    if isinstance(seq, str | list | tuple) and isinstance(times, int):
        if len(seq) * times > MAX_SEQUENCE:
            raise SecurityError(f"repetition would make more than {MAX_SEQUENCE} items")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if abs(base) > 1 and abs(base).bit_length() * exponent > MAX_POWER_BITS:
            raise SecurityError("power result is too large")


def _make_env(finalize: Callable[[Any], Any], raw: Callable[[Any], Any]) -> _Sandbox:
    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        finalize=finalize,
        keep_trailing_newline=True,
    )
    env.filters["raw"] = raw
    env.globals["range"] = _budgeted_range
    return env


# ----------------------------------------------------------------- the renderer


class Renderer:
    """Renders runbook values against a context of params, ticket, steps, ...

    One renderer may be shared by every execution of a process; compiled templates
    are cached by source text.
    """

    def __init__(self) -> None:
        self._text_env = _make_env(_finalize_text, _raw_text)
        self._command_env = _make_env(_finalize_command, _raw_command)
        self._text_template = functools.lru_cache(maxsize=1024)(
            self._text_env.from_string
        )
        self._command_template = functools.lru_cache(maxsize=1024)(
            self._command_env.from_string
        )
        self._expression = functools.lru_cache(maxsize=1024)(
            functools.partial(
                self._text_env.compile_expression, undefined_to_none=False
            )
        )

    @property
    def globals(self) -> frozenset[str]:
        """Names jinja provides to every template (``range``, ``dict``, ...)."""
        return frozenset(self._text_env.globals)

    def render(
        self,
        value: Any,
        context: Mapping[str, Any],
        *,
        command: bool = False,
        command_fields: frozenset[str] | set[str] = frozenset(),
    ) -> Rendered:
        """Render every template in ``value``, through dicts and lists.

        Args:
            value: a string, or a dict or list holding strings; other values pass
                through unchanged.
            context: the names templates may use (``params``, ``ticket``, ...).
            command: the value is a shell command line: substitutions are quoted and
                secrets are passed by environment (see the module docs).
            command_fields: when ``value`` is a mapping (a step's ``with`` block),
                the top-level keys rendered as if ``command`` were true.

        Returns:
            The rendered value and the secret environment variables it needs.

        Raises:
            TemplateError: a template is invalid, names something undefined, or
                breaks a sandbox rule.
        """
        secret_env: dict[str, str] = {}
        value_env: dict[str, str] = {}
        token = _secrets.set(secret_env)
        values_token = _values.set(value_env)
        try:
            if command_fields and isinstance(value, Mapping):
                rendered: Any = {
                    key: self._render_value(
                        item, context, command or key in command_fields
                    )
                    for key, item in value.items()
                }
            else:
                rendered = self._render_value(value, context, command)
        finally:
            _values.reset(values_token)
            _secrets.reset(token)
        return Rendered(rendered, secret_env, value_env)

    def condition(self, expr: str, context: Mapping[str, Any]) -> bool:
        """Evaluate a ``when:`` condition: ``"{{ expr }}"`` or a bare expression.

        Strings ``false``, ``no``, ``off``, ``0`` and the empty string count as false.

        Raises:
            TemplateError: the expression is invalid or names something undefined.
        """
        if is_templated(expr):
            value = self._render_string(expr, context, command=False)
        else:
            value = self._evaluate(expr, expr, context)
        if isinstance(value, SecretValue):
            value = value.value
        if isinstance(value, str):
            return value.strip().lower() not in _FALSE_WORDS
        return bool(value)

    def check(self, template: str) -> list[str]:
        """Syntax errors in a template (empty when it parses), for the loader."""
        try:
            self._text_env.parse(template)
        except jinja2.TemplateSyntaxError as exc:
            return [_syntax_message(exc, template)]
        return []

    def check_expression(self, expr: str) -> list[str]:
        """Syntax errors in a bare expression such as a ``when:`` condition."""
        try:
            self._expression(expr)
        except jinja2.TemplateSyntaxError as exc:
            return [_syntax_message(exc, expr)]
        return []

    # ------------------------------------------------------------- internals

    def _render_value(
        self, value: Any, context: Mapping[str, Any], command: bool
    ) -> Any:
        if isinstance(value, str):
            if not is_templated(value):
                return value
            return self._render_string(value, context, command=command)
        if isinstance(value, Mapping):
            return {
                k: self._render_value(v, context, command) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._render_value(v, context, command) for v in value]
        return value

    def _render_string(
        self, template: str, context: Mapping[str, Any], *, command: bool
    ) -> Any:
        if not command:
            expr = _single_expression(template)
            if expr is not None:
                native = self._evaluate(template, expr, context)
                return native.value if isinstance(native, SecretValue) else native
        compile_ = self._command_template if command else self._text_template
        budget = _budget.set([MAX_ITERATIONS])
        slots = shellquote.Slots()
        slotted = _slots.set(slots)
        try:
            compiled = compile_(template)
            text = _bounded_text(compiled.generate(context), template)
            if not command:
                return text
            return shellquote.place_values(text, slots, _quote_for)
        except TemplateError:
            raise
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(template, _syntax_message(exc, template)) from None
        except Exception as exc:
            raise TemplateError(template, _error_text(exc)) from None
        finally:
            _slots.reset(slotted)
            _budget.reset(budget)

    def _evaluate(self, template: str, expr: str, context: Mapping[str, Any]) -> Any:
        budget = _budget.set([MAX_ITERATIONS])
        try:
            result = self._expression(expr)(**context)
            if isinstance(result, jinja2.Undefined):
                str(result)  # a StrictUndefined raises here, naming what is missing
            return result
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(template, _syntax_message(exc, template)) from None
        except Exception as exc:
            raise TemplateError(template, _error_text(exc)) from None
        finally:
            _budget.reset(budget)


def _bounded_text(chunks: Iterator[str], template: str) -> str:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise TemplateError(
                template, f"output is longer than {MAX_OUTPUT} characters"
            )
        parts.append(chunk)
    return "".join(parts)


_ENV_FOR_PARSING = _make_env(_finalize_text, _raw_text)
_SINGLE = re.compile(r"\A\{\{[-+]?(?P<expr>.*?)[-+]?\}\}\Z", re.DOTALL)


def _single_expression(template: str) -> str | None:
    """The expression of a template that is exactly one ``{{ expr }}``, else None."""
    match = _SINGLE.match(template)
    if match is None:
        return None
    try:
        body = _ENV_FOR_PARSING.parse(template).body
    except jinja2.TemplateSyntaxError:
        return None
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    outputs = body[0].nodes
    if len(outputs) != 1 or isinstance(outputs[0], nodes.TemplateData):
        return None
    return match.group("expr")


def template_roots(template: str) -> set[str]:
    """The names a template reads that it does not define itself (loop locals, set).

    Raises:
        TemplateError: the template does not parse.
    """
    return set(meta.find_undeclared_variables(_parse(template)))


def template_references(template: str, root: str) -> set[str]:
    """Constant keys read under ``root``: ``{{ steps.x.status }}`` gives ``{"x"}``.

    Both ``root.key`` and ``root['key']`` count; computed keys are not reported.

    Raises:
        TemplateError: the template does not parse.
    """
    found: set[str] = set()
    tree = _parse(template)
    for getattr_ in tree.find_all(nodes.Getattr):
        if _is_name(getattr_.node, root):
            found.add(getattr_.attr)
    for getitem in tree.find_all(nodes.Getitem):
        key = getitem.arg
        if _is_name(getitem.node, root) and isinstance(key, nodes.Const):
            if isinstance(key.value, str):
                found.add(key.value)
    return found


def _is_name(node: nodes.Node, name: str) -> bool:
    return isinstance(node, nodes.Name) and node.name == name


def _parse(template: str) -> nodes.Template:
    try:
        return _ENV_FOR_PARSING.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(template, _syntax_message(exc, template)) from None


def _syntax_message(exc: jinja2.TemplateSyntaxError, template: str) -> str:
    where = f" (line {exc.lineno})" if "\n" in template.strip() else ""
    return f"syntax error{where}: {exc.message}"


def _error_text(exc: Exception) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
