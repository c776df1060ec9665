"""The routing tree with inheritance resolved, and the aggregation-group key of an alert."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from schemas.notify import ALL_LABELS, GROUP_INTERVAL, GROUP_WAIT, REPEAT_INTERVAL, Matcher, Route

_T = TypeVar("_T")


def _pick(own: _T | None, inherited: _T) -> _T:
    return inherited if own is None else own


@dataclass(frozen=True)
class RouteNode:
    """One route as the dispatcher uses it: every inherited value filled in."""

    id: str  # Alertmanager's route ID: `{}` for the root, then `/{matchers}/index` per level
    receiver: str | None
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...] | None  # None: every label (`...`)
    group_wait: float
    group_interval: float
    repeat_interval: float
    children: tuple[RouteNode, ...]
    mute_time_intervals: tuple[str, ...] = ()  # not inherited, as in Alertmanager
    active_time_intervals: tuple[str, ...] = ()

    @classmethod
    def root(cls, route: Route | None) -> RouteNode:
        top = cls("{}", None, (), False, (), GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL, ())
        return top._child(route or Route(), "{}")

    def _child(self, route: Route, node_id: str) -> RouteNode:
        group_by = self.group_by if route.group_by is None else tuple(route.group_by)
        node = RouteNode(
            id=node_id,
            receiver=_pick(route.receiver, self.receiver),
            matchers=tuple(route.all_matchers),
            continue_=route.continue_,
            group_by=None if group_by == (ALL_LABELS,) else group_by,
            group_wait=_pick(route.group_wait, self.group_wait),
            group_interval=_pick(route.group_interval, self.group_interval),
            repeat_interval=_pick(route.repeat_interval, self.repeat_interval),
            children=(),
            mute_time_intervals=tuple(route.mute_time_intervals),
            active_time_intervals=tuple(route.active_time_intervals),
        )
        children = (
            node._child(sub, f"{node_id}/{{{', '.join(map(str, sub.all_matchers))}}}/{index}")
            for index, sub in enumerate(route.routes)
        )
        return replace(node, children=tuple(children))

    def match(self, labels: Mapping[str, str]) -> list[RouteNode]:
        """The routes an alert goes to: the deepest matching ones, siblings tried while `continue`."""
        if not all(m.matches(labels) for m in self.matchers):
            return []
        found: list[RouteNode] = []
        for child in self.children:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        names = labels.keys() if self.group_by is None else self.group_by
        return {name: labels[name] for name in sorted(names) if name in labels}

    def group_key(self, group_labels: Mapping[str, str]) -> str:
        pairs = ", ".join(f"{name}={json.dumps(value)}" for name, value in group_labels.items())
        return f"{self.id}:{{{pairs}}}"
