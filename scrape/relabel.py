"""Prometheus relabeling (keep, drop, replace, labeldrop, labelkeep, labelmap, hashmod).

Hand-written: no maintained Python library implements Prometheus' relabel semantics. Regexes are
anchored at both ends and `$1`/`${1}` in a replacement are group references, as in Prometheus.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

from schemas.scrape import RelabelConfig, valid_label_name

_GROUP_REF = re.compile(r"\$\{?(\w+)\}?")


@lru_cache(maxsize=1024)
def _anchored(regex: str) -> re.Pattern[str]:
    return re.compile(f"^(?:{regex})$")


def _expand(match: re.Match[str], template: str) -> str:
    """Go's regexp Expand: `$1`, `${1}` and `${name}`; an unknown group expands to nothing."""

    def group(ref: re.Match[str]) -> str:
        name = ref.group(1)
        try:
            value = match.group(int(name) if name.isdigit() else name)
        except IndexError:  # no such group
            return ""
        return value or ""

    return _GROUP_REF.sub(group, template)


def hashmod(value: str, modulus: int) -> int:
    """Prometheus' hashmod: the low 8 bytes of the value's MD5, big-endian, modulo `modulus`."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


def relabel(labels: dict[str, str], steps: Sequence[RelabelConfig]) -> dict[str, str] | None:
    """The labels after every step, or None when a keep or drop step discarded them."""
    labels = dict(labels)
    for step in steps:
        regex = _anchored(step.regex)
        value = step.separator.join(labels.get(name, "") for name in step.source_labels)
        action = step.action
        if action == "keep":
            if not regex.match(value):
                return None
        elif action == "drop":
            if regex.match(value):
                return None
        elif action == "replace":
            match = regex.match(value)
            if match:
                target = _expand(match, step.target_label)
                if not valid_label_name(target):
                    continue
                replaced = _expand(match, step.replacement)
                if replaced:
                    labels[target] = replaced
                else:
                    labels.pop(target, None)
        elif action == "hashmod":
            labels[step.target_label] = str(hashmod(value, step.modulus))
        elif action == "labelmap":
            for name, label_value in list(labels.items()):
                match = regex.match(name)
                if match:
                    labels[_expand(match, step.replacement)] = label_value
        elif action == "labeldrop":
            labels = {k: v for k, v in labels.items() if not regex.match(k)}
        elif action == "labelkeep":
            labels = {k: v for k, v in labels.items() if regex.match(k)}
    return labels
