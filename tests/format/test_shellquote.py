"""Values land in shell commands as data whatever quotes surround them (CASES C28)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from haloterm.engine.shellquote import contextualise
from haloterm.engine.templates import Renderer, SecretValue, TemplateError

NASTY = [
    "$(touch {probe}); echo hi",
    "`touch {probe}`",
    "'; touch {probe}; echo '",
    '"; touch {probe}; echo "',
    "line1\nline2; touch {probe}",
    'it\'s "quoted" `touch {probe}` $HOME \\ back\\slash',
    "EOF\ntouch {probe}",
]

COMMANDS = {
    "plain": "printf '%s\\n' {{ v }}",
    "double": "printf '%s\\n' \"{{ v }}\"",
    "double-with-text": "printf '%s\\n' \"dq: {{ v }} end\"",
    "single": "printf '%s\\n' 'sq: {{ v }} end'",
    "heredoc": "cat <<EOF\nhd: {{ v }}\nEOF",
    "quoted-heredoc": "cat <<'EOF'\nqhd: {{ v }}\nEOF",
    "subshell-in-double": "printf '%s\\n' \"$(printf %s {{ v }})\"",
}

EXPECTED_PREFIX = {
    "plain": "",
    "double": "",
    "double-with-text": "dq: ",
    "single": "sq: ",
    "heredoc": "hd: ",
    "quoted-heredoc": "qhd: ",
    "subshell-in-double": "",
}
EXPECTED_SUFFIX = {"double-with-text": " end", "single": " end"}


def run(command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=True,
    ).stdout


@pytest.mark.parametrize("context", sorted(COMMANDS))
@pytest.mark.parametrize("nasty", NASTY)
def test_every_context_keeps_the_value_literal(
    tmp_path: Path, context: str, nasty: str
) -> None:
    probe = tmp_path / "pwned"
    value = nasty.format(probe=probe)
    renderer = Renderer()
    try:
        command = renderer.render(COMMANDS[context], {"v": value}, command=True).value
    except TemplateError as exc:
        # Only a line that would end a here-document is refused, never run.
        assert "heredoc" in context and "EOF" in value, exc
        return
    out = run(command, tmp_path)
    expected = EXPECTED_PREFIX[context] + value + EXPECTED_SUFFIX.get(context, "")
    assert out.rstrip("\n") == expected
    assert not probe.exists()


def test_raw_is_left_to_the_author() -> None:
    rendered = Renderer().render('echo "{{ v | raw }}"', {"v": "$HOME"}, command=True)
    assert rendered.value == 'echo "$HOME"'


@pytest.mark.parametrize(
    "template",
    [
        'echo "pw={{ s }}"',
        "echo 'pw={{ s }}'",
        "cat <<EOF\npw={{ s }}\nEOF",
        "echo pw={{ s }}",
    ],
)
def test_secrets_go_by_environment_in_every_context(
    tmp_path: Path, template: str
) -> None:
    rendered = Renderer().render(
        template, {"s": SecretValue("db", "S3 cr'3t\"!")}, command=True
    )
    assert "S3" not in rendered.value
    env = {"PATH": "/usr/bin:/bin", **rendered.secret_env}
    assert run(rendered.value, tmp_path, env).strip() == "pw=S3 cr'3t\"!"


def test_a_secret_in_a_quoted_heredoc_is_refused() -> None:
    with pytest.raises(TemplateError, match="quoted here-document"):
        Renderer().render(
            "cat <<'EOF'\n{{ s }}\nEOF", {"s": SecretValue("db", "x")}, command=True
        )


def test_an_unset_value_is_an_error_not_the_word_none() -> None:
    with pytest.raises(TemplateError, match="has no value"):
        Renderer().render("rm -rf /data/{{ v }}", {"v": None}, command=True)
    with pytest.raises(TemplateError, match="has no value"):
        Renderer().render("note {{ v }}", {"v": None})


def test_statements_and_comments_pass_through() -> None:
    source = '{% for h in hosts %}ping "{{ h }}" {% endfor %}{# note #}'
    assert "_sh_double" in contextualise(source)
    rendered = Renderer().render(source, {"hosts": ["a b", "$x"]}, command=True)
    assert rendered.value == 'ping "a b" ping "\\$x" '
