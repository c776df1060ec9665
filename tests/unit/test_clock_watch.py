"""flows/clock_watch.py: a step back of the wall clock, told from time passing, ends the process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flows import clock_watch
from flows.clock_watch import EXIT_CODE, STEP_BACK_S, start_if_supervised, wall_step, watch


def test_a_step_is_the_wall_clock_moving_beyond_the_monotonic_one() -> None:
    assert wall_step((1000.0, 50.0), (1001.0, 51.0)) == 0.0  # both moved alike
    assert wall_step((1000.0, 50.0), (1010.0, 60.0)) == 0.0  # a stall under load moves both alike
    assert wall_step((1000.0, 50.0), (4600.0, 51.0)) == pytest.approx(3599.0)  # ahead
    assert wall_step((1000.0, 50.0), (881.0, 51.0)) == pytest.approx(-120.0)  # back
    assert wall_step((1000.0, 50.0), (1000.5, 53.0)) == pytest.approx(-2.5)
    assert wall_step((10**18, 5 * 10**9), (10**18 - 120 * 10**9, 6 * 10**9)) == -121 * 10**9  # ns, exact


def _clocks(
    readings: list[tuple[float, float]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[float, float]]:
    feed = iter(readings)
    monkeypatch.setattr(clock_watch, "_readings", lambda: next(feed))
    monkeypatch.setattr(clock_watch.time, "sleep", lambda _s: None)
    return feed


def test_the_watch_exits_on_a_long_step_back_and_not_before(monkeypatch: pytest.MonkeyPatch) -> None:
    short = STEP_BACK_S - 1
    readings = [
        (1000.0, 0.0),
        (1001.0, 1.0),
        (1002.0 - short, 2.0),
        (4000.0, 3.0),
        (3000.0, 4.0),
        (3001.0, 5.0),
    ]
    feed = _clocks(readings, monkeypatch)
    exits: list[int] = []
    watch(exits.append)
    assert exits == [EXIT_CODE]  # at the hour back (3000 after 4000), not the short one, nor forward
    assert list(feed) == [(3001.0, 5.0)]  # and it stopped reading there


def test_not_started_unless_a_supervisor_restarts_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock_watch.SUPERVISED_ENV, raising=False)
    assert not start_if_supervised()
