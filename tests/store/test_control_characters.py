"""Control characters in untrusted ticket and approval text are stored visible, so
no terminal that shows them obeys them (a title, a cleared screen, a clipboard)."""

from __future__ import annotations

import json
from pathlib import Path

from haloterm.storage import Store
from haloterm.textsafe import visible_controls
from tests.cli.test_cli import Cli
from tests.store.conftest import FakeClock
from tests.store.test_approvals import request

OSC_TITLE = "T \x1b]0;pwned-by-ticket\x07"
CLEAR = "\x1b[2J\x1b[H"
CLIPBOARD = "\x1b]52;c;ZWNobyBoaQ==\x07"


def _no_controls(text: str) -> bool:
    return not any(ord(ch) < 0x20 and ch not in "\n\t" for ch in text) and not any(
        0x7F <= ord(ch) <= 0x9F for ch in text
    )


def test_ticket_text_is_stored_with_controls_made_visible(store: Store) -> None:
    ticket_id = store.create_ticket(
        title=OSC_TITLE + "\nsecond line",
        description="before " + CLEAR + " after\n\tindented",
        fields={"note" + CLEAR: CLIPBOARD, "nested": [{"x": "\x9b31m"}]},
        actor="intake",
    )
    ticket = store.get_ticket(ticket_id)
    assert ticket is not None
    assert ticket.title == "T ␛]0;pwned-by-ticket␇␊second line"
    assert ticket.description == "before ␛[2J␛[H after\n\tindented"
    assert ticket.fields == {
        "note␛[2J␛[H": "␛]52;c;ZWNobyBoaQ==␇",
        "nested": [{"x": "\ufffd31m"}],
    }
    updated = store.update_ticket(
        ticket_id, actor="bob", title=CLEAR, note=OSC_TITLE, fields={"k": CLEAR}
    )
    assert updated.title == "␛[2J␛[H"
    assert updated.fields["k"] == "␛[2J␛[H"
    for event in store.ticket_history(ticket_id):
        assert _no_controls(json.dumps(event.data, ensure_ascii=False))


def test_visible_controls_keeps_lines_unless_asked() -> None:
    assert visible_controls("a\nb\tc\x00\x7f") == "a\nb\tc␀␡"
    assert visible_controls("a\nb\tc", one_line=True) == "a␊b␉c"


def test_the_cli_never_prints_a_stored_escape(tmp_path: Path) -> None:
    cli = Cli(tmp_path)

    made = cli("ticket", "new", "--title", OSC_TITLE + CLEAR, "--type", "incident")
    assert made.returncode == 0, made.stderr
    listed = cli("ticket", "list")
    assert listed.returncode == 0, listed.stderr
    assert "pwned-by-ticket" in listed.stdout
    assert "\x1b" not in listed.stdout and "\x07" not in listed.stdout


def test_an_approval_message_and_comment_are_stored_visible(
    store: Store, clock: FakeClock
) -> None:
    execution_id = request(
        store, clock, approvers=["bob"], message="Restart " + OSC_TITLE
    )
    decided = store.decide_approval(
        execution_id, "approve", actor="bob", decision="rejected", comment="no " + CLEAR
    )
    assert decided.message == "Restart T ␛]0;pwned-by-ticket␇"
    assert decided.comment == "no ␛[2J␛[H"


def test_params_shown_as_json_carry_no_raw_c1_or_bidi_controls(tmp_path: Path) -> None:
    """JSON escapes C0 itself; C1 controls (8-bit CSI, OSC) and bidi overrides are
    written as \\u escapes too: the same data, nothing a terminal acts on."""
    cli = Cli(tmp_path)
    book = tmp_path / "echo.yaml"
    book.write_text(
        "name: echo-v\nparams:\n  v: {type: string, required: true}\n"
        "steps:\n  - id: say\n    action: shell\n"
        '    with: {command: "echo {{ params.v }}"}\n',
        encoding="utf-8",
    )

    assert cli("import", str(book)).returncode == 0
    hostile = "v\x9b2J\x9d0;Y\x07 \u202eabc"
    ran = cli("run", "echo-v", "-p", f"v={hostile}")
    assert ran.returncode == 0, ran.stderr
    for args in (("show", "1"), ("executions", "--json")):
        shown = cli(*args)
        assert shown.returncode == 0, shown.stderr
        assert not any(ch in shown.stdout for ch in "\x9b\x9d\x07\u202e"), args
        assert "\\u009b" in shown.stdout, args


def test_text_stored_before_is_made_visible_when_the_store_opens(
    tmp_path: Path,
) -> None:
    """A store written before text was kept visible is migrated, so no screen
    needs a guard of its own."""
    import sqlite3

    path = tmp_path / "old.db"
    with Store.open(path) as store:
        ticket_id = store.create_ticket(title="t", actor="intake")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE tickets SET title = ?, fields = ? WHERE id = ?",
            (OSC_TITLE, json.dumps({"k": CLEAR}), ticket_id),
        )
        conn.execute("DELETE FROM migrations WHERE name = '0007_visible_text'")
        conn.execute("PRAGMA user_version = 6")
    conn.close()
    with Store.open(path) as store:
        ticket = store.get_ticket(ticket_id)
    assert ticket is not None
    assert ticket.title == "T ␛]0;pwned-by-ticket␇"
    assert ticket.fields == {"k": "␛[2J␛[H"}
