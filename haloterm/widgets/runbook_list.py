"""The runbook list: title, tags, last run and success rate of every runbook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.message import Message
from textual.widgets import DataTable

from haloterm.widgets.row_table import RowTable
from haloterm.widgets.status import status_text

if TYPE_CHECKING:
    from haloterm.storage import RunbookSummary, Store


class RunbookList(RowTable):
    """Runbooks from ``store.list_runbooks()``; Enter posts :class:`RunbookChosen`."""

    class RunbookChosen(Message):
        """Enter on a runbook."""

        def __init__(self, runbook: str) -> None:
            super().__init__()
            self.runbook = runbook

    class Loaded(Message):
        """The list was read from the store and shown."""

    def __init__(self, store: Store, *, id: str | None = None) -> None:
        super().__init__(id=id, zebra_stripes=True)
        self.store = store
        self.summaries: list[RunbookSummary] = []
        self.loaded = False
        """True once the list has been read at least once."""

    def on_mount(self) -> None:
        self.add_column("Runbook", key="title", width=34)
        self.add_column("Last run", key="last", width=13)
        self.add_column("Success", key="rate", width=10)
        self.add_column("Tags", key="tags")
        self.reload()

    @work(thread=True, exclusive=True, group="runbook-list", exit_on_error=False)
    def reload(self) -> None:
        """Read the list again in a thread."""
        summaries = self.store.list_runbooks()
        self.app.call_from_thread(self._show, summaries)

    def _show(self, summaries: list[RunbookSummary]) -> None:
        keep = self.selected_name
        self.summaries = summaries
        self.clear()
        for summary in summaries:
            self.add_row(*self._cells(summary), key=summary.name)
        names = [s.name for s in summaries]
        if keep in names:
            self.move_cursor(row=names.index(keep), animate=False)
        self.loaded = True
        self.post_message(self.Loaded())

    @staticmethod
    def _cells(summary: RunbookSummary) -> list[Text]:
        title = Text(summary.title or summary.name, no_wrap=True, overflow="ellipsis")
        tags = Text(", ".join(summary.tags), style="dim", no_wrap=True)
        if summary.last_status:
            last = status_text(summary.last_status)
        else:
            last = Text("never", style="dim")
        if summary.success_rate is None:
            rate = Text("-", style="dim")
        else:
            rate = Text(f"{summary.success_rate:.0%} of {summary.runs}")
        return [title, last, rate, tags]

    @property
    def selected_name(self) -> str | None:
        if not self.summaries:
            return None
        return self.summaries[min(self.cursor_row, len(self.summaries) - 1)].name

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.RunbookChosen(event.row_key.value))
