"""The Textual app: wires the services, forwards engine events, pushes the main screen.

Engine events enter the UI here and only here: :meth:`HalotermApp.on_bus_event` turns
notices into toasts, keeps the waiting-approvals count, and hands every event to each
screen on the stack that defines ``on_engine_event(event)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.dom import DOMNode
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from haloterm.engine.events import (
    ApprovalChanged,
    Event,
    ExecutionChanged,
    Notice,
)
from haloterm.logsetup import setup_logging

if TYPE_CHECKING:
    from haloterm.services import Services

logger = logging.getLogger(__name__)

MIN_WIDTH = 60
MIN_HEIGHT = 16
KEY_HOLD_LIMIT = 3.0
"""Seconds keys are held for a screen that is still loading, at most."""
STORE_POLL_SECONDS = 0.25
"""How often the console looks for other processes' commits."""
_SEVERITIES = ("information", "warning", "error")
Severity = Literal["information", "warning", "error"]


def close_log_file() -> None:
    """Remove and close the log file handlers :func:`setup_logging` installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_haloterm", False):
            root.removeHandler(handler)
            handler.close()


class HalotermApp(App[None]):
    """The haloterm console."""

    CSS_PATH = "haloterm.tcss"
    TITLE = "haloterm"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding(
            "question_mark",
            "help",
            "Help",
            id="help",
            tooltip="Keys of the current screen",
        ),
        Binding(
            "a",
            "approvals",
            "Approvals",
            id="approvals",
            tooltip="Steps waiting for a decision, in every run",
        ),
        Binding(
            "h", "history", "History", id="history", tooltip="Past runs and the audit"
        ),
        Binding(
            "w",
            "schedules",
            "Schedules",
            id="schedules",
            tooltip="When runbooks fire next; pause or resume",
            show=False,
        ),
        Binding("q", "quit_console", "Quit", id="quit", tooltip="Leave the console"),
    ]
    """Keys that work on every screen."""

    waiting_approvals: reactive[int] = reactive(0, init=False)
    """How many approvals wait for a decision, across every run and console."""

    automation_note: reactive[str] = reactive("", init=False)
    """Where automation runs, when another session holds its lease."""
    interrupted_runs: reactive[int] = reactive(0, init=False)
    """How many runs were interrupted (their process died) and wait for a resume."""

    def __init__(
        self,
        services: Services,
        *,
        clock: Callable[[], datetime] | None = None,
        automation: bool = False,
    ) -> None:
        super().__init__()
        self.services = services
        self.automation = automation
        """Whether this console competes for the automation lease."""
        self.clock: Callable[[], datetime] = clock or services.clock
        self._unsubscribe: Callable[[], None] | None = None
        self.hung_up = False
        """The terminal went away (SIGHUP): nothing is drawn; runs go on."""
        self._starting = True
        self._held_keys: list[events.Key] = []
        self._hold_timer: Timer | None = None
        self._hold_expired = False
        self._key_in_flight = False
        self._store_version: int | None = None

    @property
    def operator(self) -> str:
        return self.services.operator

    async def on_mount(self) -> None:
        setup_logging(self.services.settings.log_level)
        await self.services.start(automation=self.automation)
        self._unsubscribe = self.services.engine.bus.subscribe(self.on_bus_event)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self.on_hangup)
        self.sub_title = self.operator
        from haloterm.screens.main import MainScreen

        await self.push_screen(MainScreen())
        self._starting = False
        self._check_size(self.size.width, self.size.height)
        self.count_waiting_approvals()
        self.count_interrupted_runs()
        # Other processes' runs become interrupted without an event reaching us.
        self.set_interval(10.0, self.count_interrupted_runs)
        # Nor do their tickets, runs, logs and approvals: the store is polled.
        self.set_interval(STORE_POLL_SECONDS, self.poll_store)
        self.replay_keys()

    async def on_unmount(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._unsubscribe is not None:
            self._unsubscribe()
        try:
            await self.services.stop()
        finally:
            close_log_file()

    # ------------------------------------------------------------------ typing ahead

    async def on_event(self, event: events.Event) -> None:
        # Keys typed faster than the console answers (p, r, Enter in one burst) are
        # handled one at a time: a key waits until the one before it has gone all
        # the way through (its widget, then the bindings) and until the screen it
        # lands on has loaded what it acts on. None is lost or lands on the screen
        # before.
        if isinstance(event, events.Key) and not event.is_forwarded:
            if self._held_keys or self._keys_wait():
                self._hold_key(event)
            else:
                await self._send_key(event)
            return
        await super().on_event(event)

    def _keys_wait(self) -> bool:
        if self._key_in_flight:
            return True
        if self._hold_expired:
            return False
        return self._starting or not getattr(self.screen, "keys_ready", True)

    def _hold_key(self, key: events.Key) -> None:
        if self._hold_timer is None:
            self._hold_timer = self.set_timer(KEY_HOLD_LIMIT, self._release_held_keys)
        self._held_keys.append(key)
        logger.debug("key %s held until %s is ready", key.key, self.screen)

    async def _send_key(self, key: events.Key) -> None:
        target: DOMNode | None = self.focused or self.screen
        self._key_in_flight = True
        await super().on_event(key)
        self._follow_key(target)

    def _follow_key(self, node: DOMNode | None) -> None:
        # A callback queued behind the key at each widget from the focused one up:
        # when the last runs in the app, the key has bubbled through and any binding
        # it fired has run.
        while node is not None and node is not self:
            if node.call_later(self._follow_key, node.parent):
                return
            node = node.parent
        self.call_later(self._key_done)

    def _key_done(self) -> None:
        self._key_in_flight = False
        self.replay_keys()

    def replay_keys(self) -> None:
        """Replay the keys held so far, if the current screen is ready for them.

        Screens that load before they can act on keys set ``keys_ready = False``
        and call this once they are ready.
        """
        if self._held_keys:
            self.call_next(self._replay_held_keys)

    async def _replay_held_keys(self) -> None:
        if self._held_keys and not self._keys_wait():
            await self._send_key(self._held_keys.pop(0))
        if not self._held_keys:
            self._hold_expired = False
            if self._hold_timer is not None:
                self._hold_timer.stop()
                self._hold_timer = None

    async def _release_held_keys(self) -> None:
        # A screen that never became ready must not swallow the keyboard: after
        # the limit the held keys go through as typed.
        logger.warning(
            "replaying %d held keys after %ss", len(self._held_keys), KEY_HOLD_LIMIT
        )
        self._hold_timer = None
        self._hold_expired = True
        self._key_in_flight = False
        await self._replay_held_keys()

    # ------------------------------------------------------------------ hangup

    def on_hangup(self) -> None:
        """The terminal is gone (an SSH session dropped): keep runs going headless.

        Drawing goes to /dev/null and input waits on a pipe nobody writes, so the
        engine and its heartbeat keep running in this loop; the process exits once
        no run it owns is active. Another console shows those runs live meanwhile.
        """
        if self.hung_up:
            return
        self.hung_up = True
        logger.warning(
            "terminal hung up; %d runs continue without a screen",
            len(self.services.engine.active),
        )
        _detach_terminal()
        self._exit_when_idle()
        self.set_interval(0.5, self._exit_when_idle)

    def _exit_when_idle(self) -> None:
        if not self.services.engine.active:
            logger.info("no run left after the hangup; exiting")
            # The driver's input thread may sit in a read of the quiet pipe (it
            # saw the dead terminal readable just before the swap); closing the
            # pipe's write end ends that read, so stopping the driver can join it.
            _release_quiet_input()
            self.exit()

    # ------------------------------------------------------------------ events

    def on_bus_event(self, event: Event) -> None:
        """Take one engine event (in the app's loop) and fan it out to the screens."""
        if isinstance(event, Notice):
            severity: Severity = "information"
            if event.severity in _SEVERITIES:
                severity = event.severity  # type: ignore[assignment]
            self.notify(
                event.text, title=event.title or "", severity=severity, markup=False
            )
        elif isinstance(event, ApprovalChanged):
            self.count_waiting_approvals()
        elif isinstance(event, ExecutionChanged) and (
            event.status == "interrupted"
            or event.reason is None
            and self.interrupted_runs
        ):
            self.count_interrupted_runs()
        for screen in list(self.screen_stack):
            handler = getattr(screen, "on_engine_event", None)
            if handler is None:
                continue
            try:
                handler(event)
            except Exception:
                logger.exception("screen %s failed on %s", screen, event)

    @work(thread=True, exclusive=True, group="store-poll", exit_on_error=False)
    def poll_store(self) -> None:
        """Notice a commit by any process (one cheap pragma) and tell the screens.

        Events tell this console what its own engine does; this is how it learns
        what other consoles, workers and CLI runs did, within a quarter second.
        """
        if self.hung_up:
            return
        version = self.services.store.data_version()
        if version == self._store_version:
            return
        self._store_version = version
        self.call_from_thread(self._store_changed)

    def _store_changed(self) -> None:
        self.count_waiting_approvals()
        for screen in list(self.screen_stack):
            handler = getattr(screen, "on_store_changed", None)
            if handler is None:
                continue
            try:
                handler()
            except Exception:
                logger.exception("screen %s failed on a store change", screen)

    @work(thread=True, exclusive=True, group="interrupted", exit_on_error=False)
    def count_interrupted_runs(self) -> None:
        """Count runs whose process died, for the title line of every console, and
        say where automation runs when another session holds its lease."""
        if self.hung_up:
            return  # nothing is drawn; don't hold the loop up on the way out
        count = len(self.services.store.interrupted_executions(limit=1000))
        note = ""
        automation = self.services.automation
        if self.automation and (automation is None or not automation.holding):
            holder = self.services.store.lease_holder()
            note = holder.describe() if holder else "automation: no session runs it"
        self.call_from_thread(setattr, self, "automation_note", note)
        self.call_from_thread(setattr, self, "interrupted_runs", count)

    @work(thread=True, exclusive=True, group="approvals-count", exit_on_error=False)
    def count_waiting_approvals(self) -> None:
        if self.hung_up:
            return
        count = len(self.services.store.pending_approvals())
        self.call_from_thread(setattr, self, "waiting_approvals", count)

    def watch_waiting_approvals(self, count: int) -> None:
        self._show_counts()

    def watch_interrupted_runs(self, count: int) -> None:
        self._show_counts()

    def watch_automation_note(self, note: str) -> None:
        self._show_counts()

    def _show_counts(self) -> None:
        count = self.waiting_approvals
        title = self.operator
        if count:
            title += f" · {count} approval{'s' if count != 1 else ''} waiting"
        if self.interrupted_runs:
            title += f" · {self.interrupted_runs} interrupted (h)"
        if self.automation_note:
            title += f" · {self.automation_note}"
        self.sub_title = title

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Turn a failed background job into a notification."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        logger.error("background job %s failed", event.worker.name, exc_info=error)
        self.notify(
            f"{event.worker.name or 'background job'} failed: {error}",
            title="Error",
            severity="error",
            markup=False,
        )

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        from haloterm.screens.too_small import TooSmallScreen

        small = width < MIN_WIDTH or height < MIN_HEIGHT
        showing = isinstance(self.screen, TooSmallScreen)
        if small and not showing:
            self.push_screen(TooSmallScreen())
        elif showing:
            screen = self.screen
            assert isinstance(screen, TooSmallScreen)
            if small:
                screen.show_size(width, height)
            else:
                self.pop_screen()

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        from haloterm.screens.too_small import TooSmallScreen

        if isinstance(self.screen, TooSmallScreen):
            return action in ("quit_console", "quit")
        return True

    def action_help(self) -> None:
        """Show the keys of the current screen."""
        from haloterm.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_approvals(self) -> None:
        """Open the queue of waiting approvals."""
        from haloterm.screens.approvals import ApprovalsScreen

        if not isinstance(self.screen, ApprovalsScreen):
            self.push_screen(ApprovalsScreen())

    def action_history(self) -> None:
        """Open the history of runs."""
        from haloterm.screens.history import HistoryScreen

        if not isinstance(self.screen, HistoryScreen):
            self.push_screen(HistoryScreen())

    def action_schedules(self) -> None:
        """Open the schedules and their next fire times."""
        from haloterm.screens.schedules import SchedulesScreen

        if not isinstance(self.screen, SchedulesScreen):
            self.push_screen(SchedulesScreen())

    async def action_quit(self) -> None:
        """Ctrl+Q (Textual's quit key) asks first too, like q."""
        self.action_quit_console()

    def action_quit_console(self) -> None:
        """Quit, asking first when runs started here are still going."""
        from haloterm.screens.dialogs import ConfirmScreen

        active = len(self.services.engine.active)
        if not active:
            self.exit()
            return
        runs = f"{active} run{'s' if active != 1 else ''}"
        question = (
            f"{runs} started in this console {'are' if active != 1 else 'is'} still "
            "going. Quitting stops this console owning them: they will show as "
            "interrupted and can be resumed from another console. Quit anyway?"
        )

        def decided(quit_anyway: bool | None) -> None:
            if quit_anyway:
                self.exit()

        self.push_screen(ConfirmScreen(question, confirm="Quit"), decided)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        console = [
            SystemCommand(
                "Approvals", "Steps waiting for a decision", self.action_approvals
            ),
            SystemCommand("History", "Past runs and the audit", self.action_history),
            SystemCommand(
                "Schedules",
                "When runbooks fire next; pause or resume",
                self.action_schedules,
            ),
            SystemCommand("Help", "Keys of the current screen", self.action_help),
            SystemCommand(
                "Quit haloterm", "Leave the console", self.action_quit_console
            ),
        ]
        for command in super().get_system_commands(screen):
            if command.title != "Quit":
                yield command
        yield from console
        taken = {command.title for command in console} | {"Quit"}
        yield from self._binding_commands(screen, taken)

    def _binding_commands(
        self, screen: Screen[Any], taken: set[str]
    ) -> Iterable[SystemCommand]:
        """Every key the screen offers now, as a palette command named as in the
        footer, with its key in the help line: nothing is only a key away."""
        for active in screen.active_bindings.values():
            binding = active.binding
            title = binding.description
            if not active.enabled or not title or title in taken:
                continue
            taken.add(title)
            about = binding.tooltip or title
            yield SystemCommand(
                title,
                f"{about} (key {self.get_key_display(binding)})",
                partial(self.run_action, binding.action, active.node),
            )


_QUIET_INPUT: list[int] = []


def _detach_terminal() -> None:
    """Point stdin at a pipe that never has data and stdout/stderr at /dev/null."""
    read_end, write_end = os.pipe()
    _QUIET_INPUT.append(write_end)  # held open so reads wait instead of ending
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(read_end, 0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(read_end)
    os.close(devnull)


def _release_quiet_input() -> None:
    while _QUIET_INPUT:
        os.close(_QUIET_INPUT.pop())


def create_app(
    services: Services,
    *,
    clock: Callable[[], datetime] | None = None,
    automation: bool = False,
) -> HalotermApp:
    """Build the console around ready services; the CLI and the tests both use this.

    Args:
        services: the opened services.
        clock: the clock screens show times by (frozen in snapshot tests).
        automation: compete for the automation lease (rules, schedules, ownerless
            runs); the CLI's console does, most tests do not.
    """
    return HalotermApp(services, clock=clock, automation=automation)
