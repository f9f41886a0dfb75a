"""The wait action: strict inputs (CASES C19), wall-clock targets, cancellation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from haloterm.plugins.wait import WaitAction, WaitInputs, next_occurrence
from tests.actions.context import LocalContext


class ManualClock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


def test_unquoted_time_is_rejected_with_a_hint() -> None:
    """C19: YAML 1.1 reads ``until: 22:30`` as 1350."""
    with pytest.raises(ValidationError) as caught:
        WaitInputs.model_validate({"until": 1350})
    message = str(caught.value)
    assert "read as a number (1350)" in message
    assert 'quote times: "22:30"' in message


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"duration": "5m", "until": "22:30"},
        {"until": "25:00"},
        {"until": "22:30:15"},
        {"until": "22:30", "timezone": "Mars/Olympus"},
        {"duration": 300},
        {"until": True},
    ],
)
def test_bad_inputs(given: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WaitInputs.model_validate(given)


def test_good_inputs() -> None:
    assert WaitInputs.model_validate({"duration": "1m30s"}).duration == 90
    inputs = WaitInputs.model_validate({"until": "7:05", "timezone": "Europe/London"})
    assert (inputs.until, inputs.duration) == ("7:05", None)


def test_next_occurrence_today_tomorrow_and_zones() -> None:
    now = datetime(2025, 6, 1, 21, 0, tzinfo=UTC)
    assert next_occurrence(now, "22:30", "UTC") == datetime(
        2025, 6, 1, 22, 30, tzinfo=UTC
    )
    assert next_occurrence(now, "20:59", "UTC") == datetime(
        2025, 6, 2, 20, 59, tzinfo=UTC
    )
    assert next_occurrence(now, "21:00", "UTC") == datetime(
        2025, 6, 2, 21, 0, tzinfo=UTC
    )
    # London is on BST (UTC+1) in June: 22:30 local is 21:30 UTC.
    london = next_occurrence(now, "22:30", "Europe/London")
    assert london == datetime(2025, 6, 1, 21, 30, tzinfo=UTC)
    naive = next_occurrence(now.replace(tzinfo=None), "22:30", "UTC")
    assert naive == datetime(2025, 6, 1, 22, 30, tzinfo=UTC)


def test_next_occurrence_across_daylight_saving_changes() -> None:
    # 2025-03-30 London skips 01:00-02:00; 01:30 resolves with the GMT offset.
    spring = datetime(2025, 3, 30, 0, 0, tzinfo=UTC)
    gap = next_occurrence(spring, "01:30", "Europe/London")
    assert gap == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    # 2025-10-26 London repeats 01:00-02:00; the first 01:30 (BST) is taken.
    autumn = datetime(2025, 10, 25, 23, 0, tzinfo=UTC)
    twice = next_occurrence(autumn, "01:30", "Europe/London")
    assert twice == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)


async def test_waits_until_the_clock_reaches_the_time(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2025, 6, 1, 22, 29, 0, tzinfo=UTC))
    ctx = LocalContext(tmp_path, clock=clock)
    action = WaitAction(poll_interval=0.01)
    task = asyncio.create_task(action.run(WaitInputs(until="22:30"), ctx))
    await asyncio.sleep(0.05)
    assert not task.done()
    clock.advance(seconds=59)
    await asyncio.sleep(0.05)
    assert not task.done()
    clock.advance(seconds=2)
    result = await asyncio.wait_for(task, 1)
    assert result.passed
    assert result.outputs == {"until": "2025-06-01T22:30:00+00:00", "waited": 61.0}
    ctx.finish()
    assert ctx.lines("info") == ["waiting until 22:30 UTC (2025-06-01 22:30 UTC)"]


async def test_duration_follows_the_wall_clock_jump(tmp_path: Path) -> None:
    """A clock that jumps ahead (host woke from sleep) ends the wait at once."""
    clock = ManualClock(datetime(2025, 6, 1, 12, 0, tzinfo=UTC))
    ctx = LocalContext(tmp_path, clock=clock)
    task = asyncio.create_task(
        WaitAction(poll_interval=0.01).run(WaitInputs(duration="2h"), ctx)
    )
    await asyncio.sleep(0.05)
    assert not task.done()
    clock.advance(hours=3)
    result = await asyncio.wait_for(task, 1)
    assert result.passed and result.outputs["waited"] == 3 * 3600
    ctx.finish()


async def test_short_real_wait(tmp_path: Path) -> None:
    ctx = LocalContext(tmp_path)
    started = time.monotonic()
    result = await WaitAction().run(WaitInputs(duration="200ms"), ctx)
    assert result.passed
    assert 0.19 <= time.monotonic() - started < 1.5
    ctx.finish()


async def test_cancel_ends_a_long_wait(tmp_path: Path) -> None:
    ctx = LocalContext(tmp_path)
    task = asyncio.create_task(WaitAction().run(WaitInputs(duration="1h"), ctx))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
    ctx.finish()
