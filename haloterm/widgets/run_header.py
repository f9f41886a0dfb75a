"""What the run screen says about a run in words: its header, the log pane's title
and the output-truncated banner. Every value is plain text, never markup."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from haloterm.models import Execution, Runbook, StepRun
from haloterm.widgets.status import elapsed, format_duration, format_size, status_text

if TYPE_CHECKING:
    from haloterm.storage import Approval

_DIM = Style(dim=True)


def header_text(
    execution: Execution,
    runbook: Runbook | None,
    now: datetime,
    *,
    waiting_step: str | None = None,
    approval: Approval | None = None,
    failed_step: tuple[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
) -> Text:
    """The run's header: title, version, id and status; who, how and how long; the
    reason it ended; and, when the selected step waits, what it asks and of whom.

    Args:
        execution: the run.
        runbook: its pinned runbook version, when loaded.
        now: the current time, for the elapsed time of an unfinished run.
        waiting_step: the selected step when it is waiting for a decision.
        approval: that step's approval request, when loaded.
        failed_step: the selected step's id and failure reason, when it failed (the
            tree may be too narrow to show the whole reason).
        variables: theme variables for status colours.
    """
    title = runbook.display_title if runbook is not None else execution.runbook
    text = Text()
    text.append(title, style=Style(bold=True))
    text.append(f"  v{execution.version} · run #{execution.id}  ")
    text.append_text(status_text(execution.status, variables=variables))
    text.append(f"\noperator {execution.operator} · trigger {execution.trigger}")
    if execution.ticket_id is not None:
        text.append(f" · ticket #{execution.ticket_id}")
    if execution.parent_id is not None:
        text.append(f" · child of run #{execution.parent_id}")
    seconds = elapsed(execution.started_at, execution.finished_at, now)
    if seconds is not None:
        text.append(f" · elapsed {format_duration(seconds)}")
    if execution.reason:
        text.append("\n")
        text.append(execution.reason.splitlines()[0], style=Style(italic=True))
    if failed_step is not None:
        step_id, reason = failed_step
        text.append("\n")
        text.append_text(status_text("failed", variables=variables))
        text.append(f" {step_id}: ")
        text.append(reason)
    if waiting_step is not None:
        text.append("\n")
        text.append_text(status_text("waiting", variables=variables))
        text.append(f" approval for {waiting_step}")
        if approval is not None:
            text.append(": ")
            text.append(approval.message)
            who = ", ".join(approval.approvers)
            text.append(f" (approvers: {who})", style=_DIM)
        text.append("  y approve · n reject", style=Style(bold=True))
    return text


def log_title(step_id: str | None, host: str | None, *, follow: bool) -> Text:
    """The log pane's title: whose output it shows, and whether it follows."""
    label = Text("Output: ", style=Style(bold=True))
    if step_id is None:
        label.append("every step")
    else:
        label.append(step_id)
        if host:
            label.append(f" @ {host}")
    label.append(" · following" if follow else " · paused (f to follow)", style=_DIM)
    return label


def truncation_text(runs: Iterable[StepRun], shown: int) -> Text | None:
    """``output truncated: 60.0 MB, showing last 5,000 lines``, or None when none
    of ``runs`` lost output; names the full output file when there is one."""
    truncated = [run for run in runs if run.output_truncated]
    if not truncated:
        return None
    size = sum(run.output_bytes for run in truncated)
    text = Text(f"output truncated: {format_size(size)}, showing last {shown:,} lines")
    files = [run.output_file for run in truncated if run.output_file]
    if files:
        text.append(f" · full output: {files[0]}", style=_DIM)
    return text


class RunHeader(Static):
    """The run screen's header (see :func:`header_text`)."""

    DEFAULT_CSS = """
    RunHeader {
        height: auto;
        max-height: 5;
        padding: 0 1;
    }
    """
