"""The output pane of one run: a title, the truncation banner, the log and a search box.

The pane shows one scope at a time (a step, one host of it, or every step). Changing
scope reads that scope's stored lines a page at a time in a thread worker; live lines
that arrive meanwhile wait, and are drawn once the stored ones are in, so nothing shows
twice or out of order. Live batches that arrive in the same turn of the loop are drawn
together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from haloterm.engine.events import LogLine
from haloterm.models import StepRun
from haloterm.widgets.log_view import LogView
from haloterm.widgets.run_header import log_title, truncation_text

if TYPE_CHECKING:
    from haloterm.storage import Store

LOG_PAGE = 1000
"""Stored log lines read per query when loading a scope's history."""


@dataclass(frozen=True)
class LogScope:
    """Which lines the pane shows: one step (one host of it), or every step."""

    step_id: str | None = None
    host: str | None = None

    def matches(self, line: LogLine) -> bool:
        """Whether a line belongs to this scope."""
        if self.step_id is not None and line.step_id != self.step_id:
            return False
        return self.host is None or line.host == self.host

    def covers(self, step_id: str, host: str) -> bool:
        """Whether a step (or one host of it) is inside this scope."""
        return self.step_id in (None, step_id) and self.host in (None, host)


class LogPane(Vertical):
    """Output of one execution, for one scope at a time."""

    DEFAULT_CSS = """
    LogPane {
        height: 1fr;
        & > #log-title { height: 1; padding: 0 1; }
        & > #log-banner {
            height: auto;
            padding: 0 1;
            background: $warning 20%;
            display: none;
        }
        & > LogView { height: 1fr; padding: 0 0 0 1; }
        & > #log-search { dock: bottom; display: none; }
    }
    """

    def __init__(
        self, execution_id: int, store: Store, *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.execution_id = execution_id
        self.store = store
        self.scope: LogScope | None = None
        """The scope shown; None until the first :meth:`show`."""
        self.runs: dict[tuple[str, str], StepRun] = {}
        """Step rows known, for the truncation banner."""
        self.loading = False
        """Stored lines of the scope are still being read."""
        self._pending: list[LogLine] = []
        self._flush_scheduled = False

    def compose(self) -> ComposeResult:
        yield Static(id="log-title")
        yield Static(id="log-banner")
        yield LogView(id="log")
        yield Input(placeholder="Find in log; Enter for next", id="log-search")

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    # ------------------------------------------------------------------ scope

    def show(self, scope: LogScope, *, force: bool = False) -> None:
        """Show another scope: clear the log and read its stored lines."""
        if scope == self.scope and not force:
            return
        self.scope = scope
        view = self.view
        view.clear()
        view.show_source = scope.step_id is None
        self._pending = [line for line in self._pending if scope.matches(line)]
        self.loading = True
        self._refresh_title()
        self._refresh_banner()
        self.load_logs(scope)

    @work(thread=True, exclusive=True, group="load-logs", exit_on_error=False)
    def load_logs(self, scope: LogScope) -> None:
        """Read the stored lines of the scope a page at a time, oldest first."""
        self._read_pages(scope, 0, self._append_page)
        runs = self.store.step_runs(self.execution_id)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._loaded, scope, runs)

    def _read_pages(
        self,
        scope: LogScope,
        after: int,
        deliver: Callable[[LogScope, Sequence[LogLine]], None],
    ) -> None:
        """Hand each page of stored lines after ``after`` to ``deliver`` in the
        app's thread, until the last one or until this worker is cancelled."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            page = self.store.get_logs(
                self.execution_id,
                step_id=scope.step_id,
                host=scope.host,
                after_seq=after,
                limit=LOG_PAGE,
            )
            if page:
                after = page[-1].seq
                self.app.call_from_thread(deliver, scope, page)
            if len(page) < LOG_PAGE:
                break

    def _append_page(self, scope: LogScope, page: Sequence[LogLine]) -> None:
        if scope == self.scope:
            self.view.append(page)
            self._refresh_banner()

    def catch_up(self) -> None:
        """Read lines stored since the last one taken: the output of a run another
        process owns, whose lines reach this console through the store only."""
        if self.scope is not None and not self.loading:
            self._read_new(self.scope, self.view.last_seq)

    @work(thread=True, exclusive=True, group="catch-up", exit_on_error=False)
    def _read_new(self, scope: LogScope, after: int) -> None:
        self._read_pages(scope, after, self._caught_up)

    def _caught_up(self, scope: LogScope, page: Sequence[LogLine]) -> None:
        # Lines already drawn (from events, if this process took the run over
        # meanwhile) are skipped by the view, which knows the last seq it shows.
        if scope == self.scope:
            self.queue(page)

    def _loaded(self, scope: LogScope, runs: Sequence[StepRun]) -> None:
        if scope != self.scope:
            return
        self.loading = False
        self.set_runs(runs)
        self._flush()

    # ------------------------------------------------------------------ live

    def queue(self, lines: Iterable[LogLine]) -> None:
        """Take live lines; those in scope are drawn on the next turn of the loop."""
        scope = self.scope
        if scope is None:
            return
        self._pending.extend(line for line in lines if scope.matches(line))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.call_later(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.loading or not self._pending:
            return
        pending, self._pending = self._pending, []
        if self.view.append(pending):
            self._refresh_banner()

    def set_runs(self, runs: Iterable[StepRun]) -> None:
        """Take fresh step rows (sizes and truncation are not carried by events)."""
        for run in runs:
            self.runs[(run.step_id, run.host)] = run
        self._refresh_banner()

    # ------------------------------------------------------------------ drawing

    def _refresh_title(self) -> None:
        scope = self.scope or LogScope()
        title = log_title(scope.step_id, scope.host, follow=self.view.follow)
        self.query_one("#log-title", Static).update(title)

    def _refresh_banner(self) -> None:
        banner = self.query_one("#log-banner", Static)
        scope = self.scope or LogScope()
        runs = [run for key, run in self.runs.items() if scope.covers(*key)]
        text = truncation_text(runs, self.view.line_count)
        if text is not None:
            banner.update(text)
        banner.display = text is not None

    # ------------------------------------------------------------------ keys

    def toggle_follow(self) -> None:
        """Follow the newest line, or stop following."""
        self.view.follow = not self.view.follow
        self._refresh_title()

    def open_search(self) -> None:
        """Show the search box and put the cursor in it."""
        search = self.query_one("#log-search", Input)
        search.display = True
        search.focus()

    def close_search(self) -> bool:
        """Hide the search box; returns False when it was not open."""
        search = self.query_one("#log-search", Input)
        if not search.display:
            return False
        search.display = False
        return True

    @on(Input.Submitted, "#log-search")
    def _search(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.view.find(event.value):
            self.notify(f"Not found: {event.value}", severity="warning", markup=False)
        self._refresh_title()
