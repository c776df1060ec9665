"""A short bench.faults scenario for the suite: on the tests' ports, skipped where the machine
cannot stage the fault, and failed on anything the scenario found amiss."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import TEST_PORT_BASE, Outcome, parser, run_scenario


def short_run(name: str, folder: Path, *options: str) -> Outcome:
    """The scenario `name` with these command-line options; its outcome when clean: items
    acknowledged, none lost, doubled or given up on, no failed check or refusal, recovered."""
    args = parser().parse_args([*options, "--port-base", str(TEST_PORT_BASE)])
    outcome = run_scenario(name, args, folder)
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.acked > 0 and outcome.clean, outcome
    return outcome
