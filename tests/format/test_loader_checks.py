"""Validation after reading: fields, step ids, actions, inputs and templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from haloterm.loader import LoadError, load_runbook_file, load_runbook_text
from haloterm.plugins.registry import ActionRegistry, BrokenPlugin, default_registry
from tests.format.conftest import FIXTURES

EXAMPLES = Path(__file__).parents[2] / "haloterm" / "examples" / "runbooks"


def problems(text: str, registry: ActionRegistry) -> list[tuple[int, int, str, str]]:
    with pytest.raises(LoadError) as caught:
        load_runbook_text(text, "rb.yaml", registry=registry)
    return [(p.line, p.column, p.path, p.message) for p in caught.value.problems]


def test_unknown_fields_suggest_the_closest(registry: ActionRegistry) -> None:
    text = """name: a
titel: A
steps:
  - id: s
    action: http
    timout: 5s
    with: {url: "https://x", methd: GET}
"""
    assert problems(text, registry) == [
        (2, 1, "titel", "unknown field; did you mean `title`?"),
        (6, 5, "steps[0].timout", "unknown field; did you mean `timeout`?"),
        (7, 30, "steps[0].with.methd", "unknown field; did you mean `method`?"),
    ]


def test_missing_fields_point_at_their_parent(registry: ActionRegistry) -> None:
    text = """name: a
steps:
  - id: s
    action: http
  - action: shell
    with: {command: ls}
"""
    assert problems(text, registry) == [
        (3, 5, "steps[0].with.url", "field required"),
        (5, 5, "steps[1].id", "field required"),
    ]


def test_every_problem_at_once_sorted_by_position(registry: ActionRegistry) -> None:
    text = """name: Bad Name
steps:
  - id: one
    action: shel
    with: {command: ls}
    on_failure: {goto: nowhere}
  - id: two
    action: shell
    with: {command: ls}
    on_failure: sometimes
    retries: {count: many}
"""
    found = problems(text, registry)
    assert [(line, path) for line, _, path, _ in found] == [
        (1, "name"),
        (4, "steps[0].action"),
        (6, "steps[0].on_failure.goto"),
        (10, "steps[1].on_failure"),
        (11, "steps[1].retries.count"),
    ]
    messages = [m for *_, m in found]
    assert "not a valid name" in messages[0]
    assert messages[1] == "unknown action `shel`; did you mean `shell`?"
    assert messages[2] == "`nowhere` is not a step of this runbook"
    assert messages[3].startswith("must be `abort`, `continue`")


def test_goto_typo_suggests_a_step(registry: ActionRegistry) -> None:
    text = """name: a
steps:
  - {id: restart, action: shell, with: {command: ls}, on_failure: {goto: rolback}}
  - {id: rollback, action: shell, with: {command: ls}, only_on_failure: true}
"""
    [(_, _, path, message)] = problems(text, registry)
    assert path == "steps[0].on_failure.goto"
    assert message.endswith("did you mean `rollback`?")


def test_broken_plugin_is_named_as_the_reason(registry: ActionRegistry) -> None:
    broken = ActionRegistry(
        [registry.get("shell")], [BrokenPlugin("ssh", "x.ssh:Ssh", "ImportError: no")]
    )
    text = "name: a\nsteps: [{id: s, action: ssh, with: {}}]\n"
    [(_, _, path, message)] = problems(text, broken)
    assert path == "steps[0].action"
    assert (
        message == "action `ssh` is installed but could not be loaded: ImportError: no"
    )


def test_inputs_are_checked_but_templated_values_wait_for_rendering(
    registry: ActionRegistry,
) -> None:
    text = """name: a
params:
  codes: {type: string}
steps:
  - id: s
    action: http
    with:
      url: "https://x"
      expect_status: "{{ params.codes }}"
      method: "{{ params.codes }}"
      headers: {X-Count: 5}
  - id: w
    action: wait
    with: {seconds: "5"}
"""
    assert problems(text, registry) == [
        (
            11,
            26,
            "steps[0].with.headers.X-Count",
            "must be a string, but the unquoted `5` is read as the number 5: quote it",
        ),
        (14, 21, "steps[1].with.seconds", "must be a valid integer"),
    ]


def test_static_check_problems_are_located(registry: ActionRegistry) -> None:
    text = 'name: a\nsteps: [{id: s, action: shell, with: {command: ""}}]\n'
    assert problems(text, registry) == [
        (2, 48, "steps[0].with.command", "must not be empty")
    ]


def test_an_approval_quorum_its_approvers_cannot_reach() -> None:
    registry = default_registry()
    head = "name: a\nsteps:\n  - id: g\n    action: approval\n"
    assert problems(
        head + "    with: {approvers: [bob, bob], min_approvals: 2}\n", registry
    ) == [
        (
            5,
            50,
            "steps[0].with.min_approvals",
            "2 approvals needed but only 1 person named: it could never be approved "
            "(name more, or a role:)",
        )
    ]
    # A role may hold any number of people: that is for the config to say.
    role = "    with: {approvers: [bob, role:lead], min_approvals: 3}\n"
    load_runbook_text(head + role, registry=registry)


def test_template_problems(registry: ActionRegistry) -> None:
    text = """name: a
params:
  host: {type: string}
steps:
  - id: check-health
    action: shell
    with: {command: "ping {{ params.hots }}"}
  - id: b
    action: shell
    when: "{{ steps.check-health.status == 'passed' }}"
    with: {command: "echo {{ param.host }} {{ steps.nope.output }}"}
  - id: c
    action: shell
    when: "steps.b.status =="
    with: {command: "echo {{ params.host "}
"""
    found = problems(text, registry)
    assert [(line, path) for line, _, path, _ in found] == [
        (7, "steps[0].with.command"),
        (10, "steps[1].when"),
        (10, "steps[1].when"),
        (11, "steps[1].with.command"),
        (11, "steps[1].with.command"),
        (14, "steps[2].when"),
        (15, "steps[2].with.command"),
    ]
    messages = [m for *_, m in found]
    assert messages[0] == "`params.hots` is not a declared param; did you mean `host`?"
    assert "write steps['check-health'] for an id with a `-`" in messages[1]
    assert "unknown name `health`" in messages[2]
    assert messages[3] == "`steps.nope` is not a step of this runbook"
    assert (
        "unknown name `param`" in messages[4]
        and "did you mean `params`?" in messages[4]
    )
    assert messages[5].startswith("template syntax error")
    assert messages[6].startswith("template syntax error")


def test_loop_locals_jinja_globals_and_bracket_refs_are_fine(
    registry: ActionRegistry,
) -> None:
    runbook = load_runbook_text(
        """name: a
params:
  hosts: {type: string, default: "a b"}
triggers:
  - on: ticket.created
    params: {hosts: "{{ ticket.fields.hosts }}"}
steps:
  - id: first-step
    action: shell
    with:
      command: >-
        {% for h in params.hosts.split() %}ping {{ h }};{% endfor %}
        {% for i in range(3) %}{{ loop.index }}{% endfor %}
  - id: second
    action: shell
    when: steps['first-step'].status == 'passed' and execution.operator != ''
    with: {command: "echo {{ runbook.name }} {{ dict(a=1) }}"}
""",
        registry=registry,
    )
    assert runbook.steps[1].when is not None


def test_trigger_params_must_be_declared(registry: ActionRegistry) -> None:
    text = """name: a
params: {host: {type: string}}
triggers:
  - on: ticket.created
    params: {hots: "{{ ticket.title }}"}
steps: [{id: s, action: shell, with: {command: ls}}]
"""
    assert problems(text, registry) == [
        (
            5,
            14,
            "triggers[0].params.hots",
            "`hots` is not a param of this runbook; did you mean `host`?",
        )
    ]


def test_runbook_that_runs_itself_is_rejected(registry: ActionRegistry) -> None:
    text = """name: a
steps:
  - {id: s, action: shell, with: {command: ls}}
  - {id: again, action: runbook, with: {runbook: a}}
"""
    assert problems(text, registry) == [
        (4, 5, "steps[1]", "cycle: a → a (the runbook runs itself)")
    ]


def test_the_complete_example_of_the_format_loads() -> None:
    """The complete example of RUNBOOK_FORMAT.md, with the installed actions."""
    runbook, _ = load_runbook_file(FIXTURES / "restart-web.yaml")
    assert runbook.name == "restart-web"
    assert [s.id for s in runbook.steps][-1] == "rollback"
    assert runbook.params["token"].type == "secret"


def test_installed_actions_are_all_usable() -> None:
    """Every built-in action named in pyproject imports (none broken)."""
    registry = default_registry()
    assert registry.broken == []
    assert {"shell", "ssh", "http", "notify", "ticket", "approval", "runbook"} <= set(
        registry.names()
    )


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_examples_load(path: Path) -> None:
    runbook, text = load_runbook_file(path, registry=default_registry())
    assert runbook.name == path.stem
    assert text


def test_examples_exist() -> None:
    assert len(list(EXAMPLES.glob("*.yaml"))) >= 3
