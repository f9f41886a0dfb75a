"""A bounded, lazily rendered view of step output.

Lines arrive raw (ANSI kept, as the store has them). On the way in each is passed
through :func:`haloterm.engine.output.sanitize_for_display`, which keeps SGR colour
sequences and drops every other control sequence, and is cut when very long. Lines are
turned into Rich ``Text`` (``Text.from_ansi``, never markup) only when they scroll into
view, so a burst of thousands of lines costs little more than a list append.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from haloterm.engine.events import LogLine
from haloterm.engine.output import sanitize_for_display

MAX_LINES = 5000
"""Lines kept in the widget; older ones scroll away (the store keeps them)."""
MAX_LINE_CHARS = 2000
"""Characters of one line shown; the rest is cut for display only."""

_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_PARTIAL_ESCAPE = re.compile(r"\x1b[^m]*$")
_STRAY_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1a\x1c-\x1f\x7f]")


@dataclass(slots=True)
class LogEntry:
    """One line as the view keeps it: sanitised, cut, with where it came from."""

    number: int
    seq: int
    step_id: str
    host: str
    stream: str
    text: str
    cut: int = 0
    """How many characters were cut from the end for display."""

    @property
    def plain(self) -> str:
        """The text without its colour sequences (what search looks at)."""
        return _SGR.sub("", self.text)


def clean_line(raw: str, max_chars: int = MAX_LINE_CHARS) -> tuple[str, int]:
    """Sanitise one raw output line for display and cut it when very long.

    Args:
        raw: the line as the store keeps it (raw ANSI).
        max_chars: visible characters kept.

    Returns:
        The text (SGR sequences only) and how many characters were cut.
    """
    text = _STRAY_CONTROLS.sub("", sanitize_for_display(raw).replace("\t", "    "))
    # Sequences take room too: keep a generous slice of the raw text, then count what
    # is visible, so a 3 MB line never reaches the renderer whole.
    budget = max_chars * 4
    cut = 0
    if len(text) > budget:
        cut = len(text) - budget
        text = _PARTIAL_ESCAPE.sub("", text[:budget])
    visible = _SGR.sub("", text)
    if len(visible) > max_chars:
        cut += len(visible) - max_chars
        text = visible[:max_chars]
    return text, cut


def line_text(text: str) -> Text:
    """Rich text of a sanitised line: SGR colours applied, never markup."""
    rendered = Text.from_ansi(text, no_wrap=True, end="")
    rendered.end = ""
    return rendered


class LogView(ScrollView, can_focus=True):
    """Step output, newest at the bottom, at most ``max_lines`` lines.

    The view drops lines it has already shown (by ``seq``), so history loaded from the
    store and live batches can overlap without showing a line twice.
    """

    DEFAULT_CSS = """
    LogView {
        background: $surface;
        color: $foreground;
        overflow-y: scroll;
        overflow-x: auto;
        &:focus { background-tint: $foreground 5%; }
    }
    """

    BINDINGS = [
        Binding("end", "follow_end", "End", show=False, id="log-end"),
        Binding("home", "scroll_home", "Top", show=False, id="log-home"),
    ]

    follow: reactive[bool] = reactive(True)
    """Keep the newest line in view as lines arrive."""
    show_source: reactive[bool] = reactive(False)
    """Prefix each line with its step (and host): used when showing every step."""

    def __init__(
        self,
        *,
        max_lines: int = MAX_LINES,
        max_line_chars: int = MAX_LINE_CHARS,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.max_lines = max_lines
        self.max_line_chars = max_line_chars
        self._entries: deque[LogEntry] = deque(maxlen=max_lines)
        self._counter = 0
        self._width = 0
        self._cache: LRUCache[tuple[int, bool, bool], Strip] = LRUCache(1024)
        self.last_seq = 0
        """The highest ``seq`` shown; lines at or below it are skipped."""
        self.dropped = 0
        """Lines that scrolled out of the widget's bound since the last clear."""
        self.search_term = ""
        self.match_number: int | None = None

    # ------------------------------------------------------------------ content

    @property
    def line_count(self) -> int:
        """Lines currently held."""
        return len(self._entries)

    @property
    def entries(self) -> list[LogEntry]:
        """The lines held, oldest first (a copy)."""
        return list(self._entries)

    def append(self, lines: Iterable[LogLine]) -> int:
        """Add lines at the bottom; returns how many were new.

        Args:
            lines: log lines in ``seq`` order; ones already shown are skipped.
        """
        added = 0
        for line in lines:
            if line.seq and line.seq <= self.last_seq:
                continue
            self.last_seq = max(self.last_seq, line.seq)
            text, cut = clean_line(line.text, self.max_line_chars)
            if len(self._entries) == self.max_lines:
                self.dropped += 1
            self._counter += 1
            entry = LogEntry(
                self._counter, line.seq, line.step_id, line.host, line.stream, text, cut
            )
            self._entries.append(entry)
            self._width = max(self._width, self._entry_width(entry))
            added += 1
        if added:
            self._resized()
        return added

    def clear(self) -> None:
        """Forget every line (and the last seq shown)."""
        self._entries.clear()
        self._cache.clear()
        self._width = 0
        self.last_seq = 0
        self.dropped = 0
        self.match_number = None
        self.virtual_size = Size(0, 0)
        self.refresh()

    def plain_lines(self) -> list[str]:
        """The held lines as plain text (no colours), oldest first."""
        return [entry.plain for entry in self._entries]

    def _entry_width(self, entry: LogEntry) -> int:
        width = len(entry.plain) + len(self._prefix(entry))
        return width + (len(self._cut_note(entry.cut)) if entry.cut else 0)

    def _resized(self) -> None:
        self.virtual_size = Size(self._width, len(self._entries))
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
            # A line wider than the view brings a horizontal scrollbar, which takes
            # rows only once laid out: scroll again then, so the last line shows.
            self.call_after_refresh(self._keep_end)
        self.refresh()

    def _keep_end(self) -> None:
        if self.follow and self.scroll_offset.y < self.max_scroll_y:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_show_source(self) -> None:
        self._cache.clear()
        self._width = max((self._entry_width(e) for e in self._entries), default=0)
        self.virtual_size = Size(self._width, len(self._entries))
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def action_follow_end(self) -> None:
        """Jump to the newest line and follow again."""
        self.follow = True

    # ------------------------------------------------------------------ search

    def find(self, term: str, *, backwards: bool = False) -> bool:
        """Move to the next line containing ``term`` (case-insensitive), wrapping.

        Args:
            term: the text to look for; an empty term clears the match.
            backwards: look above the current match instead of below.

        Returns:
            Whether a line matched.
        """
        self.search_term = term
        self._cache.clear()
        if not term or not self._entries:
            self.match_number = None
            self.refresh()
            return False
        needle = term.casefold()
        entries = list(self._entries)
        current = self._index_of(self.match_number)
        count = len(entries)
        start = count - 1 if current is None and backwards else -1
        if current is not None:
            start = current
        step = -1 if backwards else 1
        for offset in range(1, count + 1):
            index = (start + step * offset) % count
            if needle in entries[index].plain.casefold():
                self.match_number = entries[index].number
                self.follow = False
                self.scroll_to(y=max(0, index - self.size.height // 2), animate=False)
                self.refresh()
                return True
        self.match_number = None
        self.refresh()
        return False

    def _index_of(self, number: int | None) -> int | None:
        if number is None or not self._entries:
            return None
        index = number - self._entries[0].number
        return index if 0 <= index < len(self._entries) else None

    @property
    def match_index(self) -> int | None:
        """The line index (0 = oldest held) of the current search match."""
        return self._index_of(self.match_number)

    # ------------------------------------------------------------------ render

    def _prefix(self, entry: LogEntry) -> str:
        if not self.show_source:
            return ""
        source = f"{entry.step_id}@{entry.host}" if entry.host else entry.step_id
        return f"{source[:24]:<24} │ "

    @staticmethod
    def _cut_note(cut: int) -> str:
        return f" … [{cut:,} more characters]"

    def _render_entry(self, entry: LogEntry, matched: bool) -> Strip:
        key = (entry.number, matched, self.show_source)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        text = Text(no_wrap=True, end="")
        prefix = self._prefix(entry)
        if prefix:
            text.append(prefix, style=Style(dim=True))
        body = line_text(entry.text)
        if entry.stream == "info":
            body.stylize(Style(italic=True))
        if matched and self.search_term:
            body.highlight_words(
                [self.search_term], style=Style(reverse=True), case_sensitive=False
            )
        text.append_text(body)
        if entry.cut:
            text.append(self._cut_note(entry.cut), style=Style(dim=True))
        strip = Strip(text.render(self.app.console), text.cell_len)
        self._cache[key] = strip
        return strip

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        style = self.rich_style
        if index >= len(self._entries):
            return Strip.blank(width, style)
        entry = self._entries[index]
        strip = self._render_entry(entry, entry.number == self.match_number)
        strip = strip.apply_style(style)
        return strip.crop_extend(scroll_x, scroll_x + width, style)

    def on_mouse_scroll_up(self) -> None:
        self.follow = False
