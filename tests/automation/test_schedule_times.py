"""Fire instants of cron and ``every`` schedules, across DST changes (C13, C14)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest

from haloterm.automation.schedules import (
    ScheduleError,
    check_schedule,
    fires_between,
    next_fires,
)
from haloterm.models import Schedule


def _fires(cron: str, tz: str, start: str, count: int) -> list[str]:
    schedule = Schedule(cron=cron, timezone=tz)
    fires = next_fires(schedule, datetime.fromisoformat(start), count)
    return [f.at.isoformat() for f in fires]


def test_c13_spring_forward_runs_once_at_the_first_valid_instant() -> None:
    """C13(1): 02:30 does not exist in Berlin on 2025-03-30; it runs at 03:00 CEST."""
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    start = datetime.fromisoformat("2025-03-29T12:00+01:00")
    fires = next_fires(schedule, start, 3)
    assert [f.at.isoformat() for f in fires] == [
        "2025-03-30T01:00:00+00:00",
        "2025-03-31T00:30:00+00:00",
        "2025-04-01T00:30:00+00:00",
    ]
    assert fires[0].note is not None and "DST-adjusted" in fires[0].note
    assert "03:00 CEST" in fires[0].note
    assert fires[1].note is None


def test_c13_weekday_job_is_not_pushed_a_day_late() -> None:
    """C13(2): Mon-Fri at midnight in Chicago across DST start fires on Monday."""
    got = _fires("0 0 * * 1-5", "America/Chicago", "2025-03-07T00:00:01-06:00", 2)
    assert got == ["2025-03-10T05:00:00+00:00", "2025-03-11T05:00:00+00:00"]


def test_c14_fall_back_daily_runs_once_at_the_first_occurrence() -> None:
    got = _fires("30 2 * * *", "Europe/Berlin", "2025-10-25T12:00+02:00", 2)
    assert got == ["2025-10-26T00:30:00+00:00", "2025-10-27T01:30:00+00:00"]
    got = _fires("30 1 * * *", "America/New_York", "2025-11-01T12:00-04:00", 2)
    assert got == ["2025-11-02T05:30:00+00:00", "2025-11-03T06:30:00+00:00"]


def test_c14_sub_hourly_follows_real_elapsed_time() -> None:
    got = _fires("*/30 * * * *", "Europe/Berlin", "2025-10-26T01:50+02:00", 5)
    assert got == [
        "2025-10-26T00:00:00+00:00",
        "2025-10-26T00:30:00+00:00",
        "2025-10-26T01:00:00+00:00",
        "2025-10-26T01:30:00+00:00",
        "2025-10-26T02:00:00+00:00",
    ]


def test_sub_hourly_wall_times_in_a_gap_collapse_into_one_fire() -> None:
    got = _fires("*/15 * * * *", "Europe/Berlin", "2025-03-30T01:40+01:00", 3)
    assert got == [
        "2025-03-30T00:45:00+00:00",
        "2025-03-30T01:00:00+00:00",
        "2025-03-30T01:15:00+00:00",
    ]


def test_fixed_time_slot_keys_name_the_wall_time() -> None:
    """Both occurrences of 02:30 on the fall-back night share one slot key."""
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    fire = next_fires(schedule, datetime.fromisoformat("2025-10-25T12:00+02:00"), 1)[0]
    assert fire.slot_key == "2025-10-26T02:30"


def test_every_is_aligned_to_the_epoch() -> None:
    schedule = Schedule(every="15m")
    got = next_fires(schedule, datetime.fromisoformat("2025-06-01T10:07:00+00:00"), 2)
    assert [f.at.isoformat() for f in got] == [
        "2025-06-01T10:15:00+00:00",
        "2025-06-01T10:30:00+00:00",
    ]


def test_fires_between_is_bounded() -> None:
    """C17(b): ten years of five-minute slots are not all listed."""
    schedule = Schedule(cron="*/5 * * * *")
    start = datetime.fromisoformat("2025-06-01T00:00:00+00:00")
    end = datetime.fromisoformat("2035-06-01T00:00:00+00:00")
    fires, more = fires_between(schedule, start, end, limit=50)
    assert len(fires) == 50 and more


@pytest.mark.parametrize(
    ("cron", "tz", "message"),
    [
        ("0 2 * *", "UTC", "five fields"),
        ("0 0 2 * * *", "UTC", "five fields"),
        ("61 2 * * *", "UTC", "not a valid"),
        ("0 2 * * *", "Mars/Olympus", "unknown timezone"),
    ],
)
def test_bad_schedules_are_named(cron: str, tz: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        check_schedule(Schedule(cron=cron, timezone=tz))


def _preview(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "haloterm", "schedules", "preview", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_preview_prints_the_c13_and_c14_instants() -> None:
    spring = _preview(
        "30 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--from",
        "2025-03-29T12:00+01:00",
        "--count",
        "3",
    )
    assert spring.returncode == 0, spring.stderr
    assert spring.stdout.splitlines() == [
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:30:00+02:00",
        "2025-04-01T02:30:00+02:00",
    ]
    assert "DST-adjusted" in spring.stderr
    chicago = _preview(
        "0 0 * * 1-5",
        "--timezone",
        "America/Chicago",
        "--from",
        "2025-03-07T00:00:01-06:00",
        "--count",
        "1",
    )
    assert chicago.stdout.splitlines() == ["2025-03-10T00:00:00-05:00"]
    fall = _preview(
        "*/30 * * * *",
        "--timezone",
        "Europe/Berlin",
        "--from",
        "2025-10-26T01:50+02:00",
        "--count",
        "4",
    )
    assert fall.stdout.splitlines() == [
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:00:00+01:00",
        "2025-10-26T02:30:00+01:00",
    ]
    bad = _preview("0 2 * *", "--timezone", "UTC")
    assert bad.returncode == 2 and "five fields" in bad.stderr
