"""`talonflow rules check` on Prometheus rule files, beside the real `promtool check rules`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED_RULES = sorted((ROOT / "rules" / "seeds").glob("*.yml"))

BROKEN = {
    "bad_expr": (
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x)\n",
        'group "g", rule 1 ("A"): expr: could not parse expression: 1:1: parse error: expected type range',
    ),
    "bad_for": (
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 5x\n",
        'group "g", rule 1 ("A"): for: not a valid duration string: "5x"',
    ),
    "unknown_key": (
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    severity: page\n",
        'group "g", rule 1 ("A"): severity: field severity is not allowed',
    ),
    "duplicate_group": (
        "groups:\n- name: g\n  rules: []\n- name: g\n  rules: []\n",
        'group "g": groupname: "g" is repeated in the same file',
    ),
    "record_with_for": (
        "groups:\n- name: g\n  rules:\n  - record: a:b\n    expr: up\n    for: 1m\n",
        'group "g", rule 1 ("a:b"): for: invalid field \'for\' in recording rule',
    ),
    "bad_template": (
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      s: '{{ .Foo '\n",
        'group "g", rule 1 ("A"): annotations.s: template:',
    ),
}


def _talonflow(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "talonflow.cli", "rules", "check", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run compose/native/install-peers.sh"
    return subprocess.run(
        [promtool, "check", "rules", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_seed_rules_are_valid_in_both() -> None:
    files = [str(p) for p in SEED_RULES]
    assert len(files) == 8
    assert _promtool(*files).returncode == 0
    result = _talonflow(*files)
    assert result.returncode == 0, result.stderr
    assert "gateway_alerts.yml: ok, 3 groups, 6 rules" in result.stderr


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_fail_in_both_and_name_the_place(case: str, tmp_path: Path) -> None:
    text, message = BROKEN[case]
    path = tmp_path / f"{case}.yml"
    path.write_text(text)
    assert _promtool(str(path)).returncode == 1
    result = _talonflow(str(path))
    assert result.returncode == 1
    assert f"talonflow: rules: {path}: {message}" in result.stderr


def test_the_default_rules_are_valid_in_both_and_the_older_dialect_is_refused(tmp_path: Path) -> None:
    """alerts.yaml, which the alerts flow runs, is a Prometheus rule file; `expr` maps are not PromQL."""
    assert _promtool(str(ROOT / "alerts.yaml")).returncode == 0
    result = _talonflow(str(ROOT / "alerts.yaml"), str(SEED_RULES[0]), "--json")
    assert result.returncode == 0, result.stderr
    assert '"valid": true' in result.stdout
    old = tmp_path / "old.yaml"
    old.write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: {value: {metric: q}}\n")
    assert _promtool(str(old)).returncode == 1
    refused = _talonflow(str(old))
    assert refused.returncode == 1
    assert f'talonflow: rules: {old}: group "g", rule 1 ("A"): expr:' in refused.stderr
