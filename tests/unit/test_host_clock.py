"""bench/host_clock.py: steps are relative to the true time, and always undone (a fake setter)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from bench.host_clock import host_clock, settable


class Recorder:
    """time.clock_settime's shape: records (clock, seconds); refuses when told to."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[int, float]] = []
        self.refuse = refuse

    def __call__(self, clock: int, seconds: float) -> None:
        if self.refuse:
            raise PermissionError(1, "Operation not permitted")
        self.calls.append((clock, seconds))


def test_a_step_is_from_the_true_time_and_undone_on_leaving() -> None:
    setter = Recorder()
    with host_clock(setter) as clock:
        clock.step(120.0)
        clock.step(-30.0)  # relative to the true time, not to the last step
    (c1, ahead), (_, behind), (_, back) = setter.calls
    assert c1 == time.CLOCK_REALTIME
    assert ahead == pytest.approx(time.time() + 120, abs=1)
    assert behind == pytest.approx(time.time() - 30, abs=1)
    assert back == pytest.approx(time.time(), abs=1)
    assert len(setter.calls) == 3


def test_nothing_is_set_when_nothing_was_stepped() -> None:
    setter = Recorder()
    with host_clock(setter):
        pass
    assert setter.calls == []


def test_an_exception_puts_the_clock_back() -> None:
    setter = Recorder()
    with pytest.raises(RuntimeError), host_clock(setter) as clock:
        clock.step(3600.0)
        raise RuntimeError("the scenario failed")
    assert setter.calls[-1][1] == pytest.approx(time.time(), abs=1)


def test_sigterm_puts_the_clock_back_and_exits() -> None:
    setter = Recorder()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exited, host_clock(setter) as clock:
        clock.step(600.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert exited.value.code == 128 + signal.SIGTERM
    assert setter.calls[-1][1] == pytest.approx(time.time(), abs=1)
    assert signal.getsignal(signal.SIGTERM) is before


def test_settable_says_why_not() -> None:
    assert "cannot set the host's clock" in settable(Recorder(refuse=True))
    assert settable(Recorder()) == ""
