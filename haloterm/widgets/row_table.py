"""A table of things to pick, one per row."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.widgets import DataTable


class RowTable(DataTable[Any]):
    """A row-cursor table where Home and End go to the first and last row.

    (A plain :class:`DataTable` scrolls sideways on Home and End, which is not what
    a list of runs, runbooks or approvals wants.)
    """

    BINDINGS = [
        Binding("home", "first_row", "First", show=False, id="row-first"),
        Binding("end", "last_row", "Last", show=False, id="row-last"),
    ]

    def __init__(self, *, id: str | None = None, zebra_stripes: bool = False) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=zebra_stripes)

    def action_first_row(self) -> None:
        """Put the cursor on the first row."""
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        """Put the cursor on the last row."""
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)
