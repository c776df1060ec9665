"""`talonflow rules check` for Prometheus rule files: the same validation the evaluator loads with."""

from __future__ import annotations

from typing import Any

from rules.templates import TemplateContext
from schemas.prometheus_rules import PromRuleFileError, load_prometheus_rules


def check_file(path: str) -> dict[str, Any]:
    """One file's verdict, in the shape `talonflow rules check --json` prints."""
    try:
        groups = load_prometheus_rules(path, TemplateContext().funcs())
    except PromRuleFileError as err:
        return {"file": path, "valid": False, "groups": 0, "rules": 0,
                "errors": [{"message": f"{path}: {p}"} for p in err.problems]}  # fmt: skip
    rules = sum(len(g.rules) for g in groups)
    return {"file": path, "valid": True, "groups": len(groups), "rules": rules, "errors": []}
