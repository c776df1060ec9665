"""Load Prometheus rule files with the template functions their annotations may call."""

from __future__ import annotations

import os

from rules.templates import TemplateContext
from schemas.prometheus_rules import Group, load_prometheus_rules


def load_groups(paths: list[str | os.PathLike[str]], context: TemplateContext) -> list[Group]:
    """Every group of every file, in file order; raises PromRuleFileError for the first bad file."""
    funcs = context.funcs()
    return [group for path in paths for group in load_prometheus_rules(path, funcs)]
