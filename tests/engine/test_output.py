"""Step output: decoding, line assembly, masking, the stored head and tail, the spool,
and display sanitising (CASES C01, C02, C04, C27)."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from haloterm.engine.events import LogLine
from haloterm.engine.output import StepOutput, sanitize_for_display, strip_ansi
from haloterm.masking import MASK, SecretMasker

SECRET = "S3cr3t!pw"


@dataclass
class Recorder:
    """Collects what a StepOutput hands on, batch by batch."""

    stored: list[list[LogLine]] = field(default_factory=list)
    live: list[list[LogLine]] = field(default_factory=list)
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    ticks: itertools.count[int] = field(default_factory=itertools.count)

    def clock(self) -> datetime:
        return self.start + timedelta(seconds=next(self.ticks))

    def texts(self, stream: str | None = None) -> list[str]:
        return [
            line.text
            for batch in self.stored
            for line in batch
            if stream is None or line.stream == stream
        ]

    def flat(self) -> list[LogLine]:
        return [line for batch in self.stored for line in batch]


def make(
    tmp_path: Path, secrets: tuple[str, ...] = (), **options: Any
) -> tuple[StepOutput, Recorder]:
    rec = Recorder()
    seq = itertools.count(1)
    live: Callable[[list[LogLine]], None] | None = rec.live.append
    if options.pop("no_live", False):
        live = None
    out = StepOutput(
        execution_id=7,
        step_id="build",
        host="web-01",
        masker=SecretMasker(secrets),
        emit=rec.stored.append,
        live=live,
        next_seq=seq.__next__,
        clock=rec.clock,
        spool_path=tmp_path / "spool" / "build.out",
        **options,
    )
    return out, rec


def test_lines_split_across_chunks_and_crlf(tmp_path: Path) -> None:
    out, rec = make(tmp_path)
    sink = out.sink("stdout")
    assert out.sink("stdout") is sink
    sink.write(b"one\r\ntw")
    sink.write(b"o\nthree\n\nlast without newline")
    summary = out.close()
    assert rec.texts() == ["one", "two", "three", "", "last without newline"]
    first = rec.flat()[0]
    assert first == LogLine(7, "build", "web-01", "stdout", 1, rec.start, "one")
    assert hash(first) == hash(
        LogLine(7, "build", "web-01", "stdout", 1, rec.start, "one")
    )
    assert summary.lines_total == 5
    assert summary.output == "one\ntwo\nthree\n\nlast without newline"
    assert not summary.truncated and summary.banner is None


def test_one_batch_per_chunk(tmp_path: Path) -> None:
    out, rec = make(tmp_path)
    out.sink("stdout").write(b"a\nb\nc\n")
    out.sink("stdout").write(b"d\ne\n")
    out.close()
    assert [[line.text for line in batch] for batch in rec.stored] == [
        ["a", "b", "c"],
        ["d", "e"],
    ]


def test_invalid_utf8_and_split_character(tmp_path: Path) -> None:
    """C02: invalid bytes become U+FFFD; a character split over reads arrives whole."""
    out, rec = make(tmp_path)
    sink = out.sink("stdout")
    sink.write(b"caf\xe9 latin1 \xff\xfe bytes\n")
    sink.write(b"\xe2\x98")
    sink.write(b"\xa0 skull\n")
    sink.write(b"cut at the end \xe2\x98")
    out.close()
    assert rec.texts() == [
        "caf\ufffd latin1 \ufffd\ufffd bytes",
        "\u2620 skull",
        "cut at the end \ufffd",
    ]


def test_streams_decode_independently(tmp_path: Path) -> None:
    out, rec = make(tmp_path)
    out.sink("stdout").write(b"\xe2\x98")
    out.sink("stderr").write(b"err\n")
    out.sink("stdout").write(b"\xa0\n")
    out.close()
    assert rec.texts("stdout") == ["\u2620"]
    assert rec.texts("stderr") == ["err"]


def test_secret_split_across_chunks_is_masked_everywhere(tmp_path: Path) -> None:
    out, rec = make(tmp_path, secrets=(SECRET,))
    sink = out.sink("stdout")
    b64 = base64.b64encode(SECRET.encode())
    for chunk in (b"pw=S3c", b"r3t!", b"pw and ", b64[:5], b64[5:] + b"\n"):
        sink.write(chunk)
    out.sink("stderr").write(f"{SECRET}\n".encode())
    summary = out.close()
    assert rec.texts() == [f"pw={MASK} and {MASK}", MASK]
    assert summary.spool_path is not None
    spooled = summary.spool_path.read_bytes()
    assert MASK.encode() in spooled
    assert SECRET.encode() not in spooled and b64 not in spooled
    assert SECRET not in summary.output


def test_stored_head_then_live_then_banner_and_tail(tmp_path: Path) -> None:
    """C04: the head is stored as it comes; past it, lines are live only until close."""
    out, rec = make(tmp_path, store_head_lines=3, store_tail_lines=5)
    sink = out.sink("stdout")
    for i in range(20):
        sink.write(f"line {i}\n".encode())
    assert rec.texts() == ["line 0", "line 1", "line 2"]
    assert [b[0].text for b in rec.live] == [f"line {i}" for i in range(3, 20)]
    summary = out.close()

    stored = rec.flat()
    assert [line.text for line in stored[3:]] == [
        "output truncated: 0.0 MB, showing last 5 lines",
        *(f"line {i}" for i in range(15, 20)),
    ]
    assert stored[3].stream == "info"
    by_seq = sorted(stored, key=lambda line: line.seq)
    assert by_seq == stored
    live_seqs = {line.seq: line.text for batch in rec.live for line in batch}
    for line in stored[4:]:
        assert live_seqs[line.seq] == line.text
    assert summary.truncated
    assert summary.lines_total == 20 and summary.lines_stored == 8
    assert summary.banner == stored[3].text


def test_tail_without_drops_needs_no_banner(tmp_path: Path) -> None:
    out, rec = make(tmp_path, store_head_lines=2, store_tail_lines=5)
    out.sink("stdout").write(b"".join(b"%d\n" % i for i in range(6)))
    summary = out.close()
    assert rec.texts() == [str(i) for i in range(6)]
    assert not summary.truncated and summary.lines_stored == 6


def test_banner_counts_megabytes_and_uses_separators(tmp_path: Path) -> None:
    out, rec = make(tmp_path, store_head_lines=10, no_live=True)
    line = b"x" * 39 + b"\n"
    chunk = line * 25_000
    for _ in range(6):
        out.sink("stdout").write(chunk)
    summary = out.close()
    assert summary.banner == "output truncated: 6.0 MB, showing last 5,000 lines"
    assert summary.lines_total == 150_000
    assert summary.lines_stored == 5010
    assert len(rec.texts("stdout")) == 5010


def test_tail_also_bounded_in_characters(tmp_path: Path) -> None:
    out, rec = make(tmp_path, store_head_lines=0, store_tail_chars=1000)
    for _ in range(10):
        out.sink("stdout").write(b"y" * 300 + b"\n")
    summary = out.close()
    assert summary.lines_stored == 3
    assert rec.texts("info") == ["output truncated: 0.0 MB, showing last 3 lines"]


def test_long_lines_cut_for_display_kept_whole_in_spool(tmp_path: Path) -> None:
    out, rec = make(tmp_path, max_line_chars=10)
    out.sink("stdout").write(b"short\n" + b"a" * 25 + b"\nend\n")
    summary = out.close()
    assert rec.texts() == ["short", "aaaaaaaaaa …[+15 chars]", "end"]
    assert summary.spool_path is not None
    assert summary.spool_path.read_bytes() == b"short\n" + b"a" * 25 + b"\nend\n"


def test_endless_line_keeps_memory_bounded(tmp_path: Path) -> None:
    """A line that never ends is spooled as it grows; a secret on a seam is masked."""
    out, rec = make(tmp_path, secrets=(SECRET,), max_line_chars=100)
    sink = out.sink("stdout")
    blob = ("z" * 65_531 + SECRET).encode()
    for _ in range(40):
        sink.write(blob)
        assert sum(len(p) for p in sink._parts) < 2 * 1024 * 1024
    sink.write(b"\nnext\n")
    summary = out.close()
    total = 40 * (65_531 + len(MASK))
    assert rec.texts() == ["z" * 100 + f" …[+{total - 100:,} chars]", "next"]
    assert summary.spool_path is not None
    spooled = summary.spool_path.read_bytes()
    assert SECRET.encode() not in spooled
    assert spooled.count(MASK.encode()) == 40
    assert len(spooled) == total + len("\nnext\n")


def test_spool_cap(tmp_path: Path) -> None:
    out, _ = make(tmp_path, spool_cap=100)
    for _ in range(30):
        out.sink("stdout").write(b"0123456789\n")
    summary = out.close()
    assert summary.spool_truncated
    assert summary.spool_path is not None
    assert summary.spool_path.stat().st_size == 100
    assert summary.lines_total == 30


def test_no_spool_path_means_no_file(tmp_path: Path) -> None:
    out = StepOutput(
        execution_id=1,
        step_id="s",
        host="",
        masker=SecretMasker(),
        emit=lambda lines: None,
        next_seq=itertools.count().__next__,
        clock=lambda: datetime.now(UTC),
        spool_path=None,
    )
    out.sink("stdout").write(b"hi\n")
    assert out.close().spool_path is None


def test_output_keeps_last_chars_of_stdout_only(tmp_path: Path) -> None:
    out, _ = make(tmp_path, keep_output_chars=12)
    out.sink("stdout").write(b"first line\nsecond\nthird\n")
    out.sink("stderr").write(b"noise\n")
    summary = out.close()
    assert summary.output == "second\nthird"
    assert out.close() is summary


def test_info_lines_are_masked_and_stored(tmp_path: Path) -> None:
    out, rec = make(tmp_path, secrets=(SECRET,), store_head_lines=0)
    out.info(f"connecting with {SECRET}")
    out.sink("stdout").write(b"dropped\n")
    out.close()
    assert rec.flat()[0].stream == "info"
    assert rec.flat()[0].text == f"connecting with {MASK}"


# ------------------------------------------------------------------ C01 display

COLOURS = (
    b"\x1b[0;32mok=12\x1b[0m \x1b[1;31mfailed=1\x1b[0m\n"
    b"before\x1b[2K\x1b[1Aafter\n"
    b"\x1b]0;owned-title\x07title\n"
    b"\x1b]52;c;ZWNobyBoaQ==\x07clip\n"
    b"\x1b[2J\x1b[Hclear\n"
)


def test_store_keeps_raw_escapes_display_keeps_sgr_export_strips(
    tmp_path: Path,
) -> None:
    """C01: raw in the store, SGR only on screen, nothing in a plain export."""
    out, rec = make(tmp_path)
    out.sink("stdout").write(COLOURS)
    out.close()
    stored = rec.texts()
    assert stored[2] == "\x1b]0;owned-title\x07title"
    shown = [sanitize_for_display(text) for text in stored]
    assert shown == [
        "\x1b[0;32mok=12\x1b[0m \x1b[1;31mfailed=1\x1b[0m",
        "beforeafter",
        "title",
        "clip",
        "clear",
    ]
    assert [strip_ansi(text) for text in stored] == [
        "ok=12 failed=1",
        "beforeafter",
        "title",
        "clip",
        "clear",
    ]


def test_sanitize_strips_every_other_control() -> None:
    cases = {
        "a\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\b": "alinkb",
        "x\x1bP1$r0m\x1b\\y": "xy",
        "x\x1b_apc\x1b\\y\x1b^pm\x1b\\z\x1bXsos\x1b\\!": "xyz!",
        "lone\x1b": "lone",
        "esc\x1b7save\x1b8\x1bc": "escsave",
        "bell\x07 bs\x08 nul\x00 del\x7f": "bell bs nul del",
        "c1\u009b2Jcsi \u009d0;t\u009c osc \u0085nel": "c1csi  osc nel",
        "tab\tkept": "tab\tkept",
        "progress 10%\rprogress 100%": "progress 100%",
        "\x1b[38;2;255;0;0mtrue colour\x1b[m": "\x1b[38;2;255;0;0mtrue colour\x1b[m",
        "\x1b[?25lhidden cursor\x1b[?1049h": "hidden cursor",
        "unterminated \x1b[12": "unterminated ",
        "unterminated osc \x1b]0;title": "unterminated osc ",
        "[bold]not markup[/]": "[bold]not markup[/]",
    }
    for raw, shown in cases.items():
        assert sanitize_for_display(raw) == shown, repr(raw)
    assert strip_ansi("\x1b[1mb\x1b[0m\x1b]0;t\x07") == "b"
