"""Run a bench (`python -m bench.…`) from a test, and let it take its private stack down on a timeout.

`subprocess.run(timeout=…)` kills the child outright, so a bench past its time left its stack
(`talonflow up --detach`: supervisord and every part) running, holding the ports the next run
needs. Here a bench past its time gets SIGINT first: its `bench_stack` context runs `down`.
"""

from __future__ import annotations

import signal
import subprocess

DOWN_S = 120  # how long a bench interrupted gets to take its stack down


def run_bench(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """The bench's exit code and output; on `timeout`, interrupted and its output so far."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as bench:
        try:
            out, err = bench.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            bench.send_signal(signal.SIGINT)
            try:
                out, err = bench.communicate(timeout=DOWN_S)
            except subprocess.TimeoutExpired:
                bench.kill()
                out, err = bench.communicate()
            err += f"\n(timed out after {timeout:.0f}s: interrupted)"
        return subprocess.CompletedProcess(command, bench.returncode, out, err)
