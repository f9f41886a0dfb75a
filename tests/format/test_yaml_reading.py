"""Reading YAML: duplicate keys, YAML 1.1 surprises, aliases and malformed files."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from haloterm.loader import (
    MAX_BYTES,
    LoadError,
    Problem,
    load_runbook_file,
    load_runbook_text,
)
from haloterm.plugins.registry import ActionRegistry
from tests.format.conftest import FIXTURES


def problems(text: str, registry: ActionRegistry) -> list[tuple[int, int, str, str]]:
    with pytest.raises(LoadError) as caught:
        load_runbook_text(text, "rb.yaml", registry=registry)
    return [(p.line, p.column, p.path, p.message) for p in caught.value.problems]


def test_c19_every_problem_with_line_column_and_path(registry: ActionRegistry) -> None:
    """CASES C19: the whole file is rejected, and every surprise is listed."""
    path = FIXTURES / "c19.yaml"
    with pytest.raises(LoadError) as caught:
        load_runbook_file(path, registry=registry)

    found = [(p.line, p.column, p.path) for p in caught.value.problems]
    assert found == [
        (3, 36, "params.release.default"),
        (4, 36, "params.region.default"),
        (5, 36, "params.mode.default"),
        (9, 19, "steps[0].with.until"),
        (13, 14, "steps[1].timeout"),
        (15, 5, "steps[1].retries"),
        (16, 9, "steps[2].id"),
    ]
    messages = [p.message for p in caught.value.problems]
    assert "unquoted `1.10` is read as the number 1.1: quote it" in messages[0]
    assert "unquoted `NO` is read as the boolean false" in messages[1]
    assert "unquoted `0755` is read as the number 493 (octal)" in messages[2]
    assert "unquoted `22:30` is read as the number 1350 (base 60)" in messages[3]
    assert 'must be a duration with a unit, like "90s"' in messages[4]
    assert messages[5] == "duplicate key `retries` (first at line 14); remove one"
    assert messages[6] == "duplicate step id `stop` (first at line 10)"
    assert str(caught.value).splitlines()[5] == (
        f"{path}:15:5: steps[1].retries: duplicate key `retries` "
        "(first at line 14); remove one"
    )


def test_quoted_values_load_as_written(registry: ActionRegistry) -> None:
    runbook = load_runbook_text(
        """
name: restart-api
params:
  release: {type: string, default: "1.10"}
  region:  {type: string, default: "NO"}
  mode:    {type: string, default: '0755'}
steps:
  - id: window
    action: wait
    with: {until: "22:30"}
  - id: stop
    action: shell
    with: {command: "systemctl stop api"}
    timeout: 90s
""",
        registry=registry,
    )
    assert [p.default for p in runbook.params.values()] == ["1.10", "NO", "0755"]
    assert runbook.steps[0].with_ == {"until": "22:30"}
    assert runbook.steps[1].timeout == 90.0


def test_trigger_on_key_stays_a_string(registry: ActionRegistry) -> None:
    """YAML 1.1 reads a bare `on` as true; keys are always strings here."""
    runbook = load_runbook_text(
        """
name: a
triggers:
  - on: ticket.created
  - manual: yes
steps: [{id: s, action: shell, with: {command: ls}}]
""",
        registry=registry,
    )
    assert runbook.triggers[0].on == "ticket.created"
    assert runbook.triggers[1].manual is True


@pytest.mark.parametrize(
    ("value", "note"),
    [("1:30", "base 60"), ("0755", "octal"), ("0b101", "binary"), ("1_000", "digit")],
)
def test_numbers_yaml_versions_disagree_on_are_reported_anywhere(
    registry: ActionRegistry, value: str, note: str
) -> None:
    text = f"""
name: a
steps:
  - id: s
    action: runbook
    with: {{runbook: b, params: {{at: {value}}}}}
"""
    [(line, column, path, message)] = problems(text, registry)
    assert (line, column, path) == (6, 37, "steps[0].with.params.at")
    assert f"unquoted `{value}`" in message and note in message


def test_duplicate_keys_are_all_reported(registry: ActionRegistry) -> None:
    text = """name: a
name: b
steps:
  - id: s
    action: shell
    with: {command: ls, command: pwd}
"""
    assert problems(text, registry) == [
        (2, 1, "name", "duplicate key `name` (first at line 1); remove one"),
        (
            6,
            25,
            "steps[0].with.command",
            "duplicate key `command` (first at line 6); remove one",
        ),
    ]


def test_alias_bomb_fails_fast_in_bounded_memory(registry: ActionRegistry) -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for index, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[index]
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    text = "\n".join(levels) + "\n"

    tracemalloc.start()
    started = time.perf_counter()
    found = problems(text, registry)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert len(found) == 1
    assert "alias bomb" in found[0][3]
    assert elapsed < 5  # a billion expanded nodes if it were built
    assert peak < 50 * 1024 * 1024


def test_aliases_and_merge_keys_within_bounds_work(registry: ActionRegistry) -> None:
    runbook = load_runbook_text(
        """
name: a
params:
  host: &host {type: string, default: web-01}
  other: *host
steps:
  - &step {id: one, action: shell, with: {command: ls}}
  - <<: *step
    id: two
""",
        registry=registry,
    )
    assert runbook.params["other"].default == "web-01"
    assert [s.id for s in runbook.steps] == ["one", "two"]
    assert runbook.steps[1].with_ == {"command": "ls"}


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("a: &a [*a]\n", (1, 8), "refers to itself"),
        ("a: *nowhere\n", (1, 4), "has no anchor"),
        ("- a\n- b\n", (1, 1), "top level must be a mapping"),
        ("just text\n", (1, 1), "top level must be a mapping"),
        ("", (1, 1), "the file is empty"),
        ("# only a comment\n", (1, 1), "the file is empty"),
        ("name: a\nsteps:\n\t- id: s\n", (3, 1), "not tabs"),
        ("name: a\x00b\n", (1, 8), "U+0000"),
        ("name: [a\n", (2, 1), "YAML syntax"),
        ("name: a\n---\nname: b\n", (2, 1), "one YAML document"),
        ("? [a, b]\n: c\n", (1, 3), "keys must be plain strings"),
        ("name: !!python/object:os.system a\n", (1, 7), "unsupported tag"),
        ("a: " + "[" * 80 + "]" * 80 + "\n", (1, 67), "nesting deeper than 64"),
    ],
)
def test_malformed_files_are_located(
    registry: ActionRegistry, text: str, where: tuple[int, int], fragment: str
) -> None:
    matching = [p for p in problems(text, registry) if fragment in p[3]]
    assert matching and matching[0][:2] == where


def test_syntax_error_stops_before_validation(registry: ActionRegistry) -> None:
    """A file that cannot be read whole is not half-validated."""
    found = problems("name: a\nsteps: [\n", registry)
    assert len(found) == 1 and found[0][3].startswith("YAML syntax")


def test_oversized_text_and_file_are_refused(
    registry: ActionRegistry, tmp_path: Path
) -> None:
    big = "name: a\n" + "# padding\n" * (MAX_BYTES // 10 + 1)
    assert "limit" in problems(big, registry)[0][3]
    path = tmp_path / "big.yaml"
    path.write_text(big)
    with pytest.raises(LoadError, match="over 1048576 bytes"):
        load_runbook_file(path, registry=registry)


def test_file_that_is_not_utf8_is_located(
    registry: ActionRegistry, tmp_path: Path
) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: a\ntitle: caf\xe9\n")
    with pytest.raises(LoadError) as caught:
        load_runbook_file(path, registry=registry)
    assert caught.value.problems == [
        Problem(str(path), 2, 11, "", "not UTF-8 text (byte 0xe9)")
    ]


def test_file_returns_its_text(registry: ActionRegistry, tmp_path: Path) -> None:
    text = "name: a\nsteps: [{id: s, action: shell, with: {command: ls}}]\n"
    path = tmp_path / "a.yaml"
    path.write_text(text, encoding="utf-8")
    runbook, read = load_runbook_file(path, registry=registry)
    assert runbook.name == "a" and read == text


def test_problem_renders_file_line_column_path() -> None:
    assert str(Problem("f.yaml", 15, 5, "steps[1].retries", "dup")) == (
        "f.yaml:15:5: steps[1].retries: dup"
    )
    assert str(Problem("f.yaml", 1, 1, "", "empty")) == "f.yaml:1:1: empty"


def test_folded_scalars_fold_to_spaces() -> None:
    """ruamel marks folds with BEL internally; none may reach a command."""
    runbook = load_runbook_text(
        "name: x\nsteps:\n  - id: a\n    action: shell\n    with:\n"
        "      command: >-\n        echo one\n        two three\n"
    )
    assert runbook.steps[0].with_["command"] == "echo one two three"


def test_a_duration_past_ten_years_is_refused_at_load(registry: ActionRegistry) -> None:
    """A timer that long would overflow when the step runs; say so at load."""
    found = problems(
        "name: long\nsteps:\n  - id: nap\n    action: shell\n"
        '    with: {command: "true"}\n    timeout: "99999999999d"\n',
        registry,
    )
    assert [(line, path) for line, _, path, _ in found] == [(6, "steps[0].timeout")]
    assert "longer than 3660d" in found[0][3]
