"""Step output: from the bytes a command wrote to the lines the store and the view get.

One :class:`StepOutput` serves one (step, host). Actions write raw bytes into its
per-stream sinks; it decodes them (one incremental UTF-8 decoder per stream, invalid
bytes become U+FFFD), splits lines, masks secrets on whole lines, spools the masked
text to a capped file, and hands lines on in batches, one batch per chunk written.

What is stored is bounded whatever the output size: the first ``store_head_lines``
lines go to ``emit`` as they come; later lines go to ``live`` only (shown, not
stored) and into a ring of the last ``store_tail_lines`` lines. At :meth:`close`, when
lines were dropped, an ``info`` banner and the ring are handed to ``emit``. The banner
takes a sequence number reserved when the head filled, so in the store it sorts after
the head and before the tail; the tail lines keep the numbers they were shown under
live, so a view that keys lines by ``seq`` shows each line once.

Text keeps its ANSI sequences; :func:`sanitize_for_display` and :func:`strip_ansi`
make it safe for a screen or a plain export.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from haloterm.engine.events import LogLine
from haloterm.masking import SecretMasker

logger = logging.getLogger(__name__)

LineBatch = Callable[[list[LogLine]], None]
"""A consumer of a batch of lines (the engine's store writer, a live view)."""

MiB = 1024 * 1024

# LogLine is a frozen dataclass whose generated __init__ sets each field through
# object.__setattr__; filling the instance dict directly builds the same object in
# half the time, which matters at hundreds of thousands of lines a second.
_FILL_DICT = not hasattr(LogLine, "__slots__")
_new = object.__new__


@dataclass(frozen=True)
class OutputSummary:
    """What :meth:`StepOutput.close` reports about one (step, host)'s output.

    Attributes:
        bytes_total: raw bytes received on all streams.
        lines_total: stdout and stderr lines seen (``info`` lines not counted).
        lines_stored: stdout and stderr lines handed to ``emit``.
        truncated: some lines were not stored (see ``banner``).
        spool_path: the file holding the full masked output, None when none was kept.
        output: the last ``keep_output_chars`` of stdout, masked, for
            ``steps.<id>.output``; lines longer than ``max_line_chars`` appear cut.
        banner: the ``output truncated: ...`` line when lines were dropped.
        spool_truncated: the spool file reached its cap and misses the end.
    """

    bytes_total: int
    lines_total: int
    lines_stored: int
    truncated: bool
    spool_path: Path | None
    output: str
    banner: str | None
    spool_truncated: bool = False


class StreamSink:
    """One stream of one :class:`StepOutput`: its decoder and its unfinished line.

    Implements the ``OutputSink`` protocol of the Action interface.
    """

    def __init__(self, owner: StepOutput, stream: str) -> None:
        self.stream = stream
        self._owner = owner
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []
        self._size = 0
        self._closed = False
        # A line too long to hold whole: its masked start (already spooled) and the
        # number of characters it had so far.
        self.long_head: str | None = None
        self.long_chars = 0

    def write(self, data: bytes) -> None:
        """Take the next chunk; it may end in the middle of a line or a character."""
        if self._closed or not data:
            return
        self._owner.bytes_total += len(data)
        text = self._decoder.decode(data)
        if text:
            self._feed(text)

    def close(self) -> None:
        """Flush what is left: a split character becomes U+FFFD, a last line is sent."""
        if self._closed:
            return
        self._closed = True
        text = self._decoder.decode(b"", final=True)
        if text:
            self._feed(text)
        if self._parts or self.long_head is not None:
            block = "".join(self._parts)
            self._parts, self._size = [], 0
            self._owner._take(self, block)

    def _feed(self, text: str) -> None:
        cut = text.rfind("\n")
        if cut < 0:
            self._parts.append(text)
            self._size += len(text)
        else:
            self._parts.append(text[:cut])
            block = "".join(self._parts)
            rest = text[cut + 1 :]
            self._parts = [rest] if rest else []
            self._size = len(rest)
            self._owner._take(self, block)
        if self._size > self._owner.spill_chars:
            self._spill()

    def _spill(self) -> None:
        # Bound the memory an endless line can take: spool its masked start now and
        # keep only what the display needs.
        done, rest = self._owner.masker.mask_partial("".join(self._parts))
        self._parts = [rest] if rest else []
        self._size = len(rest)
        self._owner._spool(done)
        head = self.long_head or ""
        room = self._owner.max_line_chars - len(head)
        self.long_head = head + done[:room] if room > 0 else head
        self.long_chars += len(done)


class StepOutput:
    """All output of one (step, host): decode, split, mask, keep a bounded tail,
    spool the full output (masked) to a capped file, hand lines on in batches.

    Args:
        execution_id: the execution the lines belong to.
        step_id: the step the lines belong to.
        host: the host for a fan-out step, ``""`` otherwise.
        masker: the execution's secrets; applied to whole lines before anything else.
        emit: takes each batch of lines to store (and publish).
        next_seq: hands out the execution's increasing log sequence numbers.
        clock: the current UTC time, for each batch's ``at``.
        spool_path: where to keep the full masked output; None keeps none.
        spool_cap: the largest spool file, in bytes.
        store_head_lines: lines stored as they come.
        store_tail_lines: lines kept in the ring and stored at :meth:`close`.
        max_line_chars: longer lines are cut in what is emitted (not in the spool).
        keep_output_chars: size of :attr:`OutputSummary.output`.
        live: takes lines past the head that are shown but not stored; None when
            nothing is watching.
        store_tail_chars: a second bound on the ring, in characters.
    """

    def __init__(
        self,
        *,
        execution_id: int,
        step_id: str,
        host: str,
        masker: SecretMasker,
        emit: LineBatch,
        next_seq: Callable[[], int],
        clock: Callable[[], datetime],
        spool_path: Path | None,
        spool_cap: int = 256 * MiB,
        store_head_lines: int = 1000,
        store_tail_lines: int = 5000,
        max_line_chars: int = 64 * 1024,
        keep_output_chars: int = 64 * 1024,
        live: LineBatch | None = None,
        store_tail_chars: int = 32 * MiB,
    ) -> None:
        self.execution_id = execution_id
        self.step_id = step_id
        self.host = host
        self.masker = masker
        self.max_line_chars = max_line_chars
        self.spill_chars = max(4 * max_line_chars, MiB)
        self.bytes_total = 0
        self._emit = emit
        self._live = live
        self._next_seq = next_seq
        self._clock = clock
        self._head_lines = store_head_lines
        self._tail_lines = store_tail_lines
        self._tail_chars = store_tail_chars
        self._keep_chars = keep_output_chars
        self._sinks: dict[str, StreamSink] = {}
        self._lines_total = 0
        self._head_used = 0
        self._dropped = 0
        self._banner_seq: int | None = None
        self._ring: deque[LogLine] = deque()
        self._ring_chars = 0
        self._out: deque[str] = deque()
        self._out_chars = 0
        self._spool_path = spool_path
        self._spool_cap = spool_cap
        self._spool_file: BinaryIO | None = None
        self._spool_written = 0
        self._spool_full = False
        self._summary: OutputSummary | None = None

    def sink(self, stream: str) -> StreamSink:
        """The sink for one stream (``stdout``, ``stderr``); the same one every time."""
        sink = self._sinks.get(stream)
        if sink is None:
            sink = self._sinks[stream] = StreamSink(self, stream)
        return sink

    def info(self, text: str) -> None:
        """Store a line (or lines) of haloterm's own, stream ``info``; always stored."""
        at = self._clock()
        lines = self.masker.mask(text).split("\n")
        self._emit(self._lines("info", at, lines))

    def close(self) -> OutputSummary:
        """Flush every stream, store the banner and the tail, and close the spool.

        Returns:
            The summary; later calls return the same one.
        """
        if self._summary is not None:
            return self._summary
        for sink in self._sinks.values():
            sink.close()
        banner = None
        batch: list[LogLine] = []
        if self._dropped and self._banner_seq is not None:
            banner = (
                f"output truncated: {self.bytes_total / 1e6:.1f} MB, "
                f"showing last {len(self._ring):,} lines"
            )
            at = self._clock()
            batch.append(self._line("info", at, banner, seq=self._banner_seq))
        batch.extend(self._ring)
        if batch:
            self._emit(batch)
        spool = self._close_spool()
        output = "\n".join(self._out)[-self._keep_chars :] if self._keep_chars else ""
        self._summary = OutputSummary(
            bytes_total=self.bytes_total,
            lines_total=self._lines_total,
            lines_stored=self._head_used + len(self._ring),
            truncated=bool(self._dropped),
            spool_path=spool,
            output=output,
            banner=banner,
            spool_truncated=self._spool_full,
        )
        return self._summary

    # ----------------------------------------------------------------- lines

    def _line(self, stream: str, at: datetime, text: str, seq: int = -1) -> LogLine:
        if seq < 0:
            seq = self._next_seq()
        return LogLine(
            self.execution_id, self.step_id, self.host, stream, seq, at, text
        )

    def _lines(self, stream: str, at: datetime, texts: list[str]) -> list[LogLine]:
        seq = self._next_seq
        if not _FILL_DICT:
            eid, sid, host = self.execution_id, self.step_id, self.host
            return [LogLine(eid, sid, host, stream, seq(), at, t) for t in texts]
        # The hot path (see _FILL_DICT): one dict per line, filled from a template.
        template = {
            "execution_id": self.execution_id,
            "step_id": self.step_id,
            "host": self.host,
            "stream": stream,
            "seq": 0,
            "at": at,
            "text": "",
        }
        lines = []
        for text in texts:
            line = _new(LogLine)
            fields = line.__dict__
            fields.update(template)
            fields["seq"] = seq()
            fields["text"] = text
            lines.append(line)
        return lines

    def _take(self, sink: StreamSink, block: str) -> None:
        """Handle complete lines (``block`` holds one or more, joined by ``\\n``)."""
        masked = self.masker.mask(block) if self.masker else block
        self._spool(masked + "\n")
        lines = masked.split("\n")
        first = lines[0]
        if "\r" in masked:
            lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        limit = self.max_line_chars
        if len(masked) > limit:
            lines = [t if len(t) <= limit else self._cut(t, len(t)) for t in lines]
        if sink.long_head is not None:
            first = first.removesuffix("\r")
            total = sink.long_chars + len(first)
            lines[0] = self._cut(sink.long_head + first[:limit], total)
            sink.long_head, sink.long_chars = None, 0
        self._dispatch(sink.stream, lines)

    def _cut(self, text: str, total: int) -> str:
        limit = self.max_line_chars
        if total <= limit:
            return text
        return f"{text[:limit]} …[+{total - limit:,} chars]"

    def _dispatch(self, stream: str, lines: list[str]) -> None:
        at = self._clock()
        self._lines_total += len(lines)
        if stream == "stdout" and self._keep_chars:
            self._keep(lines)
        room = self._head_lines - self._head_used
        if room > 0:
            head = lines[:room]
            self._head_used += len(head)
            self._emit(self._lines(stream, at, head))
            lines = lines[room:]
        if lines:
            self._overflow(stream, at, lines)

    def _overflow(self, stream: str, at: datetime, lines: list[str]) -> None:
        if self._banner_seq is None:
            self._banner_seq = self._next_seq()
        if self._live is None:
            # Nobody watches: lines that would leave the ring at once need no seq.
            skip = max(0, len(lines) - self._tail_lines)
            self._dropped += skip
            lines = lines[skip:]
        batch = self._lines(stream, at, lines)
        ring = self._ring
        ring.extend(batch)
        self._ring_chars += sum(map(len, lines))
        while len(ring) > self._tail_lines or (
            self._ring_chars > self._tail_chars and len(ring) > 1
        ):
            self._ring_chars -= len(ring.popleft().text)
            self._dropped += 1
        if self._live is not None:
            self._live(batch)

    def _keep(self, lines: list[str]) -> None:
        # Whole chunks, joined once, are cheaper to keep than single lines.
        block = "\n".join(lines)
        out = self._out
        out.append(block)
        self._out_chars += len(block) + 1
        while len(out) > 1 and self._out_chars - len(out[0]) - 1 >= self._keep_chars:
            self._out_chars -= len(out.popleft()) + 1

    # ----------------------------------------------------------------- spool

    def _spool(self, text: str) -> None:
        if self._spool_path is None or self._spool_full or not text:
            return
        data = text.encode("utf-8")
        room = self._spool_cap - self._spool_written
        if len(data) >= room:
            data = data[:room]
            self._spool_full = True
        try:
            if self._spool_file is None:
                self._spool_file = self._open_spool(self._spool_path)
            self._spool_file.write(data)
        except OSError as exc:
            logger.warning(
                "step %s: cannot write output file %s: %s",
                self.step_id,
                self._spool_path,
                exc.strerror,
            )
            self._spool_full = True
            return
        self._spool_written += len(data)

    @staticmethod
    def _open_spool(path: Path) -> BinaryIO:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh file rather than O_TRUNC: ext4 flushes a truncated file's new
        # data on close (auto_da_alloc), which costs milliseconds in the loop.
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return os.fdopen(fd, "wb", buffering=MiB)

    def _close_spool(self) -> Path | None:
        if self._spool_file is None:
            return None
        try:
            self._spool_file.close()
        except OSError as exc:
            logger.warning("cannot close output file %s: %s", self._spool_path, exc)
        return self._spool_path


# --------------------------------------------------------------------- display

_CONTROLS = re.compile(
    # CSI other than SGR (an unterminated one is dropped as far as it goes)
    r"\x1b\[(?![0-9;:]*m)[0-?]*[ -/]*[@-~]?"
    # OSC, DCS, SOS, PM, APC strings, ended by BEL or ST (or cut short)
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    # any other escape sequence, or a lone ESC
    r"|\x1b(?![\[\]PX^_])[ -/]*[0-~]?"
    # the 8-bit (C1) forms of CSI and of the string commands
    r"|\x9b[0-?]*[ -/]*[@-~]?"
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    # C0 controls but tab and newline, DEL, the remaining C1 controls, and the
    # bidirectional overrides and isolates (they reorder what is shown)
    r"|[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_NEEDS_WORK = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _after_carriage_return(text: str) -> str:
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if "\r" in line:
            lines[index] = line.rstrip("\r").rsplit("\r", 1)[-1]
    return "\n".join(lines)


def sanitize_for_display(text: str) -> str:
    """Make step output safe to show: keep SGR colours, drop every other control.

    Cursor moves, erases, window titles, clipboard writes (OSC 52), hyperlinks and
    device strings are removed, as are C0 controls other than tab and newline, all
    C1 controls, and the bidirectional overrides that would reorder a line. Where a
    line holds a carriage return, only the text after the last one is kept, as a
    terminal would show it.

    Args:
        text: masked output as stored, escapes raw.

    Returns:
        The text with only SGR sequences left; still not markup.
    """
    if not _NEEDS_WORK.search(text):
        return text
    if "\r" in text:
        text = _after_carriage_return(text)
    return _CONTROLS.sub("", text)


def strip_ansi(text: str) -> str:
    """Plain text for export: every escape sequence and control removed."""
    return _SGR.sub("", sanitize_for_display(text))
