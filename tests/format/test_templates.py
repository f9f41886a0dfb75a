"""Sandboxed template rendering: native values, quoting, secrets and the sandbox."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from haloterm.engine.templates import (
    Raw,
    Renderer,
    SecretValue,
    TemplateError,
    is_templated,
    template_references,
    template_roots,
    wrap_secrets,
)

SECRET = "S3cr3t!pw"


@pytest.fixture
def renderer() -> Renderer:
    return Renderer()


def context(**ticket: Any) -> dict[str, Any]:
    return {
        "params": wrap_secrets(
            {"count": 3, "host": "web 01", "db_password": SECRET, "flag": False},
            {"db_password"},
        ),
        "ticket": ticket or None,
        "steps": {"check": {"status": "passed", "exit_code": 0}},
        "runbook": {"name": "restart-web"},
        "execution": {"id": 7, "operator": "alice", "trigger": "manual"},
    }


def bash(command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize(
    "title",
    [
        "$(touch pwned); echo hi",
        "`touch pwned`",
        "x; touch pwned",
        'it\'s "quoted" && touch pwned',
        "Disk full on [/var] again\n$(touch pwned)",
    ],
)
def test_c28_ticket_title_is_one_quoted_word(
    renderer: Renderer, tmp_path: Path, title: str
) -> None:
    """CASES C28: a hostile ticket title reaches the shell as data, never code."""
    rendered = renderer.render(
        "printf '%s' {{ ticket.title }}", context(title=title), command=True
    )
    output = bash(rendered.value, tmp_path, rendered.value_env)
    assert output == title
    assert not (tmp_path / "pwned").exists()


def test_raw_filter_leaves_shell_text_unquoted(
    renderer: Renderer, tmp_path: Path
) -> None:
    ctx = context(title="a b")
    ctx["params"]["pipe"] = "| tr a-z A-Z"
    quoted = renderer.render("echo hi {{ params.pipe }}", ctx, command=True)
    raw = renderer.render("echo hi {{ params.pipe | raw }}", ctx, command=True)
    assert bash(quoted.value, tmp_path, quoted.value_env) == "hi | tr a-z A-Z\n"
    assert bash(raw.value, tmp_path, raw.value_env) == "HI\n"
    assert isinstance(renderer.render("{{ 'x' | raw }}", ctx).value, str)


def test_a_filter_after_raw_quotes_again(renderer: Renderer) -> None:
    rendered = renderer.render(
        "echo {{ ticket.t | raw | upper }}", context(t="a;b"), command=True
    )
    assert rendered.value == 'echo "${HALOTERM_VALUE_1}"'
    assert rendered.value_env == {"HALOTERM_VALUE_1": "A;B"}


def test_single_expression_gives_a_native_value(renderer: Renderer) -> None:
    ctx = context()
    assert renderer.render("{{ params.count }}", ctx).value == 3
    assert renderer.render("{{ params.flag }}", ctx).value is False
    assert renderer.render("{{ [params.count, 1] }}", ctx).value == [3, 1]
    assert renderer.render("{{- params.count -}}", ctx).value == 3
    assert renderer.render("n={{ params.count }}", ctx).value == "n=3"
    assert renderer.render("{{ params.count }}{{ params.count }}", ctx).value == "33"
    assert renderer.render(" {{ params.count }}", ctx).value == " 3"


def test_rendering_goes_through_dicts_and_lists(renderer: Renderer) -> None:
    value = {
        "hosts": ["{{ params.host }}", "db"],
        "n": 2,
        "x": {"y": "{{ runbook.name }}"},
    }
    assert renderer.render(value, context()).value == {
        "hosts": ["web 01", "db"],
        "n": 2,
        "x": {"y": "restart-web"},
    }


def test_command_fields_quote_only_those_fields(renderer: Renderer) -> None:
    value = {"command": "ping {{ params.host }}", "note": "{{ params.host }} ok"}
    rendered = renderer.render(value, context(), command_fields={"command"})
    assert rendered.value == {
        "command": 'ping "${HALOTERM_VALUE_1}"',
        "note": "web 01 ok",
    }
    assert rendered.value_env == {"HALOTERM_VALUE_1": "web 01"}


@pytest.mark.parametrize(
    "template",
    [
        "{{ nope }}",
        "{{ params.nope }}",
        "x {{ steps.gone.status }}",
        "{{ ticket.title }}",
    ],
)
def test_undefined_is_an_error_never_empty(renderer: Renderer, template: str) -> None:
    with pytest.raises(TemplateError) as caught:
        renderer.render(template, context())
    assert template in str(caught.value)
    assert "undefined" in str(caught.value) or "none" in str(caught.value).lower()


def test_secret_in_a_command_goes_by_environment(
    renderer: Renderer, tmp_path: Path
) -> None:
    """CASES C27: the secret is never in the command text (argv)."""
    rendered = renderer.render(
        "printf %s {{ params.db_password }} | base64", context(), command=True
    )
    assert SECRET not in rendered.value
    assert rendered.value == 'printf %s "${HALOTERM_SECRET_DB_PASSWORD}" | base64'
    assert rendered.secret_env == {"HALOTERM_SECRET_DB_PASSWORD": SECRET}
    output = bash(
        rendered.value, tmp_path, {**rendered.value_env, **rendered.secret_env}
    )
    assert output.strip() == "UzNjcjN0IXB3"  # base64 of the secret


def test_secret_outside_commands_renders_its_value(renderer: Renderer) -> None:
    rendered = renderer.render(
        {
            "headers": {
                "X-Api-Key": "{{ params.db_password }}",
                "A": "Bearer {{ params.db_password }}",
            }
        },
        context(),
    )
    assert rendered.value == {"headers": {"X-Api-Key": SECRET, "A": f"Bearer {SECRET}"}}
    assert rendered.secret_env == {}


def test_secret_cannot_be_unwrapped_or_printed(renderer: Renderer) -> None:
    secret = SecretValue("token", SECRET)
    assert (
        str(secret) == "******"
        and SECRET not in repr(secret)
        and f"{secret}" == "******"
    )
    with pytest.raises(TemplateError, match="unsafe") as caught:
        renderer.render("{{ params.db_password.value }}", context(), command=True)
    assert SECRET not in str(caught.value)
    rendered = renderer.render(
        "echo {{ params.db_password | upper }}", context(), command=True
    )
    assert SECRET.upper() not in rendered.value


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ runbook.__class__.__subclasses__() }}",
        "{{ ''.format.__globals__ }}",
        "{{ range(10**9) | list }}",
        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        "{{ 'x' * 10**9 }}",
        "{{ [1] * 10**9 }}",
        "{{ 7 ** (10**9) }}",
        "{% for i in range(5000) %}{{ 'x' * 90000 }}{% endfor %}",
    ],
)
def test_sandbox_refuses_escapes_and_runaway_work(
    renderer: Renderer, template: str
) -> None:
    with pytest.raises(TemplateError):
        renderer.render(template, context())


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{{ params.count > 2 }}", True),
        ("params.count > 5", False),
        ("{{ steps.check.status == 'passed' }}", True),
        ("{{ ticket is not none }}", False),
        ("{{ 'no' }}", False),
        ("{{ 'FALSE' }}", False),
        ("{{ '0' }}", False),
        ("{{ '' }}", False),
        ("{{ 'yes' }}", True),
        ("params.host", True),
        ("{{ params.count }}", True),
        ("{{ params.count - 3 }}", False),
    ],
)
def test_conditions(renderer: Renderer, expr: str, expected: bool) -> None:
    assert renderer.condition(expr, context()) is expected


def test_condition_with_undefined_name_is_an_error(renderer: Renderer) -> None:
    with pytest.raises(TemplateError, match="undefined"):
        renderer.condition("steps.other.status == 'passed'", context())


def test_check_reports_syntax_errors_only(renderer: Renderer) -> None:
    assert renderer.check("{{ fine }}") == []
    assert renderer.check("{{ broken ")[0].startswith("syntax error")
    assert renderer.check_expression("a ==")[0].startswith("syntax error")
    assert renderer.check_expression("a == 1") == []


def test_roots_and_references() -> None:
    template = (
        "{% for h in params.hosts %}{{ h }}{% endfor %}"
        "{% set n = 3 %}{{ n }}{{ steps['a-b'].status }}{{ steps.c }}{{ ticket.title }}"
    )
    assert template_roots(template) == {"params", "steps", "ticket"}
    assert template_references(template, "steps") == {"a-b", "c"}
    assert template_references(template, "params") == {"hosts"}
    with pytest.raises(TemplateError):
        template_roots("{{ x")


def test_is_templated() -> None:
    assert is_templated("a {{ b }}") and is_templated("{% if x %}{% endif %}")
    assert is_templated({"a": ["{{ x }}"]})
    assert not is_templated("plain { braces }") and not is_templated(3)
    assert isinstance(Raw("x"), str)
