"""Every promtool-format test file (rules/seeds/tests, tests/promql) under the real promtool and
`talonflow rules test`: both must pass it, and both must fail a copy with a wrong expectation."""

from __future__ import annotations

import contextlib
import copy
import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from talonflow.cli import main

ROOT = Path(__file__).resolve().parent.parent
TEST_FILES = sorted((ROOT / "rules" / "seeds" / "tests").glob("*_test.yml")) + sorted(
    (ROOT / "tests" / "promql").glob("*_test.yml")
)
IDS = [str(p.relative_to(ROOT)) for p in TEST_FILES]


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run compose/native/install-peers.sh (Debian package prometheus)"
    return path


def _run(tool: str, path: Path) -> subprocess.CompletedProcess[str]:
    """promtool as a process; talonflow through its CLI entry point in this process (it is pure)."""
    if tool == "promtool":
        cmd = [_promtool(), "test", "rules", str(path)]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["rules", "test", str(path)])
    return subprocess.CompletedProcess(
        ["talonflow", "rules", "test", str(path)], code, out.getvalue(), err.getvalue()
    )


def test_the_suite_is_there() -> None:
    assert len([p for p in TEST_FILES if "seeds" in str(p)]) == 8
    assert len([p for p in TEST_FILES if "promql" in str(p)]) >= 7


@pytest.mark.parametrize("path", TEST_FILES, ids=IDS)
def test_passes_under_promtool_and_talonflow(path: Path) -> None:
    for tool in ("promtool", "talonflow"):
        result = _run(tool, path)
        assert result.returncode == 0, f"{tool} failed {path}:\n{result.stdout}{result.stderr}"
        assert "SUCCESS" in result.stdout


def _break(spec: dict[str, Any]) -> dict[str, Any]:
    """The same file with one expectation made wrong: an alert label or a sample value."""
    broken = copy.deepcopy(spec)
    for group in broken["tests"]:
        for case in group.get("alert_rule_test") or []:
            if case.get("exp_alerts"):
                case["exp_alerts"][0].setdefault("exp_labels", {})["severity"] = "not-the-severity"
                return broken
        for case in group.get("promql_expr_test") or []:
            if case.get("exp_samples"):
                case["exp_samples"][0]["value"] = case["exp_samples"][0].get("value", 0) + 1
                return broken
    raise AssertionError("no expectation to break")


@pytest.mark.parametrize("path", TEST_FILES, ids=IDS)
def test_a_wrong_expectation_fails_in_both(path: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load(path.read_text())
    spec["rule_files"] = [str((path.parent / f).resolve()) for f in spec.get("rule_files") or []]
    broken = tmp_path / path.name
    broken.write_text(yaml.safe_dump(_break(spec), sort_keys=False))
    for tool in ("promtool", "talonflow"):
        result = _run(tool, broken)
        assert result.returncode == 1, f"{tool} passed a wrong expectation in {path}:\n{result.stdout}"
        assert "FAILED:" in result.stderr
    talonflow = _run("talonflow", broken)
    assert "diff:" in talonflow.stderr  # promtool's text, then a line diff of expected vs got
