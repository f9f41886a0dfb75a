"""Values land in shell commands as data whatever quotes surround them (CASES C28)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from haloterm.engine.templates import Rendered, Renderer, SecretValue, TemplateError

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


def execute(rendered: Rendered, cwd: Path) -> str:
    """Run a rendered command with the environment it refers to, as the shell
    action does."""
    env = {**os.environ, **rendered.value_env, **rendered.secret_env}
    return run(rendered.value, cwd, env)


@pytest.mark.parametrize("context", sorted(COMMANDS))
@pytest.mark.parametrize("nasty", NASTY)
def test_every_context_keeps_the_value_literal(
    tmp_path: Path, context: str, nasty: str
) -> None:
    probe = tmp_path / "pwned"
    value = nasty.format(probe=probe)
    renderer = Renderer()
    try:
        rendered = renderer.render(COMMANDS[context], {"v": value}, command=True)
    except TemplateError as exc:
        # Nothing expands in a quoted here-document: a value there is refused.
        assert context == "quoted-heredoc", exc
        return
    assert context != "quoted-heredoc"
    assert value not in rendered.value  # the command refers to it, never holds it
    out = execute(rendered, tmp_path)
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
    rendered = Renderer().render(source, {"hosts": ["a b", "$x"]}, command=True)
    assert rendered.value == 'ping "${HALOTERM_VALUE_1}" ping "${HALOTERM_VALUE_2}" '
    assert rendered.value_env == {"HALOTERM_VALUE_1": "a b", "HALOTERM_VALUE_2": "$x"}


# Commands whose quoting the shell reads differently from a naive reading of the
# template: a quote in a comment, ANSI-C quoting, a quote only one branch emits,
# raw text spliced in by one side of a conditional.
TRICKY = {
    "quote-in-comment": "# don't restart twice\nprintf '%s\\n' {{ v }}",
    "ansi-c": "printf $'it\\'s\\n'; printf '%s\\n' {{ v }}",
    "value-in-ansi-c": "printf '%s\\n' $'ansi: {{ v }}'",
    "quote-in-false-branch": "printf '%s\\n' {% if false %}'{% endif %}{{ v }}",
    "quote-in-true-branch": "printf '%s\\n' {% if true %}'x{% endif %}{{ v }}'",
    "raw-on-the-other-side": "printf '%s\\n' \"{{ v if true else w | raw }}\"",
    "value-in-comment": "printf '%s\\n' ok # note: {{ v }}",
    "dollar-double": "printf '%s\\n' $\"{{ v }}\"",
    "backticks": "printf '%s\\n' \"`printf %s {{ v }}`\"",
    "dollar-paren-in-heredoc": "cat <<EOF\n$(printf %s {{ v }})\nEOF",
    "heredoc-in-dollar-paren": 'printf "%s\\n" "$(cat <<EOF\n{{ v }}\nEOF\n)"',
    "subshell-in-dollar-paren": 'printf "%s\\n" "$( (true); printf %s {{ v }})"',
    "case-in-dollar-paren": 'printf "%s\\n" "$(case a in a) printf %s {{ v }};; esac)"',
    "partly-quoted-delimiter": "cat <<E\"OF\"\nhi\nEOF\nprintf '%s\\n' {{ v }}",
    "hash-in-braces": "printf '%s\\n' ${UNSET_X:-{{ v }}}",
}
TRICKY_OUT = {
    "quote-in-comment": "{v}",
    "ansi-c": "it's\n{v}",
    "value-in-ansi-c": "ansi: {v}",
    "quote-in-false-branch": "{v}",
    "quote-in-true-branch": "x{v}",
    "raw-on-the-other-side": "{v}",
    "value-in-comment": "ok",
    "dollar-double": "{v}",
    "backticks": "{v}",
    "dollar-paren-in-heredoc": "{v}",
    "heredoc-in-dollar-paren": "{v}",
    "subshell-in-dollar-paren": "{v}",
    "case-in-dollar-paren": "{v}",
    "partly-quoted-delimiter": "hi\n{v}",
    "hash-in-braces": "{v}",
}


@pytest.mark.parametrize("case", sorted(TRICKY))
@pytest.mark.parametrize("nasty", NASTY)
def test_the_shells_reading_decides_the_quoting(
    tmp_path: Path, case: str, nasty: str
) -> None:
    probe = tmp_path / "pwned"
    value = nasty.format(probe=probe)
    rendered = Renderer().render(TRICKY[case], {"v": value, "w": "$HOME"}, command=True)
    out = execute(rendered, tmp_path)
    assert not probe.exists(), rendered.value
    assert out.rstrip("\n") == TRICKY_OUT[case].format(v=value)


@pytest.mark.parametrize(
    "template",
    ["echo \\{{ v }}", 'echo "\\{{ v }}"', "cat <<'EOF'\n{{ v }}\nEOF"],
)
def test_places_no_quoting_can_hold_are_refused(template: str) -> None:
    with pytest.raises(TemplateError, match="cannot (be quoted safely|go in)"):
        Renderer().render(template, {"v": "$(touch /tmp/x)"}, command=True)


def test_an_escaped_backslash_before_a_value_is_fine(tmp_path: Path) -> None:
    rendered = Renderer().render(
        'printf "%s" "\\\\{{ v }}"', {"v": "$(x)"}, command=True
    )
    assert execute(rendered, tmp_path) == "\\$(x)"


@pytest.mark.parametrize(
    "template",
    [
        "echo $(( {{ v }} + 1 ))",
        "(( {{ v }} > 1 )) && echo big",
        "echo $(( (1 + (2)) * 0 + {{ v }} + 1 ))",
        "if(( {{ v }} > 1 )); then echo big; fi",
        "while(( {{ v }} > 100 )); do :; done; echo 42",
        'h=(a b c); echo "${h[{{ v }}]}42"',
        "h=(a b c); echo ${h[{{ v }}]}42",
        "h[{{ v }}]=x; echo 42",
        'sv=abcdefgh; echo "${sv:0:{{ v }}}"42',
        "sv=abcdefgh; echo ${sv:{{ v }}}42",
        "echo $[ {{ v }} + 1 ]",
    ],
)
def test_only_a_whole_number_goes_in_arithmetic(tmp_path: Path, template: str) -> None:
    """Bash evaluates what a variable holds in arithmetic (``a[$(cmd)]`` runs), so a
    value there is written out, and only when it is a whole number."""
    probe = tmp_path / "pwned"
    with pytest.raises(TemplateError, match="only a whole number"):
        Renderer().render(template, {"v": f"a[$(touch {probe})]"}, command=True)
    rendered = Renderer().render(template, {"v": 41}, command=True)
    assert rendered.value_env == {}
    assert execute(rendered, tmp_path).strip().endswith(("42", "big"))
    assert not probe.exists()
    with pytest.raises(TemplateError, match="only a whole number"):
        Renderer().render(template, {"v": "\u0661\u0662"}, command=True)


def test_a_misread_command_still_never_runs_a_value(tmp_path: Path) -> None:
    """Under dash (sh on Debian), $'...' is no quoting: the reader guesses wrong,
    the command breaks, and still the value is not run."""
    probe = tmp_path / "pwned"
    rendered = Renderer().render(
        "echo $'\\\\'{{ v }}'", {"v": f"x\ntouch {probe}\n"}, command=True
    )
    env = {**os.environ, **rendered.value_env}
    subprocess.run(["sh", "-c", rendered.value], env=env, capture_output=True)
    assert not probe.exists()
