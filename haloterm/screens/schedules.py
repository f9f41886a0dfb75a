"""Schedules: every schedule trigger with its next fires, paused or not, its last
slot, and who runs automation; ``p`` pauses and ``u`` resumes the one under the
cursor (audited, as ``haloterm schedules pause/resume`` does)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from haloterm.automation.overview import (
    ScheduleOverview,
    ScheduleRow,
    known_schedule,
    schedule_overview,
)
from haloterm.widgets.row_table import RowTable

if TYPE_CHECKING:
    from haloterm.app import HalotermApp
    from haloterm.services import Services

FIRES_SHOWN = 3
"""Next fire times listed per schedule."""

_COLUMNS = ("schedule", "when", "timezone", "state", "next fires", "last slot")


def _last_text(row: ScheduleRow) -> str:
    last = row.last
    if last is None:
        return ""
    text = f"{last.status} {last.scheduled_for.isoformat(timespec='minutes')}"
    return f"{text}: {last.reason}" if last.reason else text


def _fires_text(row: ScheduleRow) -> Text:
    lines = []
    for fire in row.fires:
        line = row.local(fire)
        lines.append(f"{line} ({fire.note})" if fire.note else line)
    return Text("\n".join(lines))


class SchedulesScreen(Screen[None]):
    """Every schedule with its next fire times, and who holds the automation lease."""

    CSS_PATH = "schedules.tcss"
    AUTO_FOCUS = "#schedules"
    SCREEN_TITLE = "Schedules"
    HELP = """
Fire times are local to each schedule's timezone, with the offset; a DST change that
moves a fire is noted beside it. Only the session holding the automation lease fires
schedules. `p` pauses the schedule under the cursor and `u` resumes it; slots passed
while paused are not run later.
"""

    BINDINGS = [
        Binding("escape", "back", "Back", id="back", tooltip="Back"),
        Binding("p", "pause_schedule", "Pause", id="pause", tooltip="Stop firing"),
        Binding("u", "resume_schedule", "Resume", id="resume", tooltip="Fire again"),
        Binding("r", "reload", "Reload", id="reload", tooltip="Read again"),
    ]
    """Keys of the schedules screen."""

    def __init__(self) -> None:
        super().__init__()
        self.overview = ScheduleOverview(None, [])

    @property
    def services(self) -> Services:
        return cast("HalotermApp", self.app).services

    def compose(self) -> ComposeResult:
        yield Static(id="lease-line", markup=False)
        yield RowTable(id="schedules", zebra_stripes=True)
        yield Static(id="schedules-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#schedules", DataTable)
        for column in _COLUMNS:
            table.add_column(column, key=column)
        self.load_schedules()

    @work(thread=True, exclusive=True, group="schedules", exit_on_error=False)
    def load_schedules(self) -> None:
        """Read every schedule, its next fires and the lease holder."""
        overview = schedule_overview(self.services.store, count=FIRES_SHOWN)
        self.app.call_from_thread(self._show, overview)

    def _show(self, overview: ScheduleOverview) -> None:
        self.overview = overview
        self.query_one("#lease-line", Static).update(Text(overview.holder_line()))
        table = self.query_one("#schedules", DataTable)
        selected = self.selected()
        table.clear()
        for row in overview.rows:
            table.add_row(*self._cells(row), key=row.id, height=None)
        ids = [row.id for row in overview.rows]
        if selected is not None and selected.id in ids:
            table.move_cursor(row=ids.index(selected.id))
        count = len(overview.rows)
        status = self.query_one("#schedules-status", Static)
        status.update(f"{count} schedule{'s' if count != 1 else ''}")

    def _cells(self, row: ScheduleRow) -> tuple[Text, ...]:
        if row.error is not None:
            state = Text("cannot run", style="bold")
            return (Text(row.id), Text(""), Text(""), state, Text(row.error), Text(""))
        state = Text("paused", style="bold") if row.paused else Text("active")
        return (
            Text(row.id),
            Text(row.what),
            Text(row.timezone),
            state,
            _fires_text(row),
            Text(_last_text(row)),
        )

    def selected(self) -> ScheduleRow | None:
        """The schedule under the cursor."""
        table = self.query_one("#schedules", DataTable)
        rows = self.overview.rows
        if not rows or not 0 <= table.cursor_row < len(rows):
            return None
        return rows[table.cursor_row]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in ("pause_schedule", "resume_schedule"):
            return True
        row = self.selected()
        if row is None:
            return False
        return row.paused != (action == "pause_schedule")

    def on_data_table_row_highlighted(self) -> None:
        self.refresh_bindings()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self.load_schedules()

    def action_pause_schedule(self) -> None:
        """Pause the schedule under the cursor."""
        row = self.selected()
        if row is not None and not row.paused:
            self.set_paused(row.id, True)

    def action_resume_schedule(self) -> None:
        """Resume the schedule under the cursor."""
        row = self.selected()
        if row is not None and row.paused:
            self.set_paused(row.id, False)

    @work(thread=True, group="schedule-pause", exit_on_error=False)
    def set_paused(self, schedule_id: str, paused: bool) -> None:
        """Pause or resume one schedule in the store (audited), then read again."""
        store = self.services.store
        if not known_schedule(store, schedule_id):
            self.app.call_from_thread(
                self.notify,
                f"no schedule {schedule_id!r} any more",
                severity="warning",
                markup=False,
            )
        else:
            store.set_schedule_paused(schedule_id, paused, actor=self.services.operator)
            done = "paused" if paused else "resumed"
            self.app.call_from_thread(
                self.notify, f"{schedule_id} {done}", markup=False
            )
        self.app.call_from_thread(self.load_schedules)
