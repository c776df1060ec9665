"""Alert rules evaluated over rollups in event time: no Kafka, no bytewax, no wall clock.

A `RuleRunner` holds one rule, the rollup rows its expression reads (bounded by its range) and
the state of its alerts, one per `by` group; it pickles, so a bytewax stateful step can keep it.
Feed it rollups with `add`, then `evaluate(at)` at each window end: the expression is computed
vectorised over the rows with `window_end <= at` (see schemas/rules.py for its meaning), and each
group's alert moves through the Prometheus states:

    inactive → pending (condition holds; with `for: 0` straight on to firing)
    pending  → firing (held for `for`, event time between evaluations) | inactive (stopped early)
    firing   → resolved (stopped, and stayed stopped for `keep_firing_for`), then inactive again

Each transition is an event in the Alertmanager webhook alert shape (status, labels,
annotations, startsAt, endsAt, generatorURL, fingerprint) plus `state`, `previous_state`,
`value` and `evaluatedAt`. Alertmanager knows only "firing" and "resolved": pending and inactive
events carry their state as status too, so forward only firing and resolved events to it.
startsAt is when the alert fired (pending, inactive: when the condition began to hold); endsAt
is "0001-01-01T00:00:00Z" while active, the evaluation time once resolved or inactive. `value`
and the annotations are from the last evaluation where the condition held.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import polars as pl
import pyarrow as pa

from schemas.rollups import ALERTS_SCHEMA, QUANTILES, ROLLUPS_SCHEMA
from schemas.rules import AbsentExpr, RatioExpr, Rule, Selection, Selector, anchored, parse_matcher

ACTIVE_ENDS_AT: Final = "0001-01-01T00:00:00Z"  # Alertmanager's zero time: no end yet
OPS: Final[dict[str, Callable[[pl.Expr, float], pl.Expr]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_FNV_OFFSET, _FNV_PRIME, _U64 = 14695981039346656037, 1099511628211, (1 << 64) - 1
_ALL = "_all"  # a constant group key: rules without `by` group like the others
_LABEL = "by:"  # prefix of the group label columns, apart from the rollup columns
_EMPTY: Final = pl.DataFrame(ROLLUPS_SCHEMA.empty_table())
_READS: Final = {  # the rollup columns each field needs
    "last": ("last",),
    "sum": ("sum",),
    "count": ("count",),
    "increase": ("increase",),
    "rate": ("increase",),
    "min": ("min",),
    "max": ("max",),
    "avg": ("sum", "count"),
    **{quantile: (quantile, "count") for quantile in QUANTILES},
}


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's `LabelSet.Fingerprint()`: FNV-1a 64 over the sorted names and values, each
    followed by 0xff, as 16 hex digits. Code point order is UTF-8 byte order, as Go sorts."""
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for byte in b"%b\xff%b\xff" % (name.encode(), labels[name].encode()):
            digest = ((digest ^ byte) * _FNV_PRIME) & _U64
    return f"{digest:016x}"


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc(at: datetime) -> datetime:
    """Event times are UTC; a naive datetime is taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _matches(value: pl.Expr, matcher: str) -> pl.Expr:
    op, operand = parse_matcher(matcher)
    if op in ("=~", "!~"):
        found = value.str.contains(anchored(operand))
        return found if op == "=~" else ~found
    return value == operand if op == "=" else value != operand


def _label(name: str) -> pl.Expr:
    """A label of the rollup's series; "" when it lacks it, as in PromQL."""
    return pl.col("attributes").map.get(name).fill_null("")


def _total(column: str) -> pl.Expr:
    """A sum that stays null when every input is null: no data is not zero."""
    return pl.when(pl.col(column).is_not_null().any()).then(pl.col(column).sum())


def _divide(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    return pl.when(denominator > 0).then(numerator / denominator)


def _reduce(field: str, over_s: float) -> pl.Expr:
    """The field over all rows of one group (`last` is reduced per series first)."""
    if field in QUANTILES:
        weight = pl.when(pl.col(field).is_not_null()).then(pl.col("count")).otherwise(0.0)
        return _divide((pl.col(field) * pl.col("count")).sum(), weight.sum())
    reducers = {
        "count": _total("count"),
        "sum": _total("sum"),
        "increase": _total("increase"),
        "rate": _total("increase") / over_s,
        "min": pl.col("min").min(),
        "max": pl.col("max").max(),
        "last": pl.col("last").max(),
        "avg": _divide(_total("sum"), pl.col("count").sum()),
    }
    return reducers[field]


@dataclass
class _Rows:
    """The rollups one selector reads, cut down to window end, series, group labels and stats."""

    selector: Selector
    by: list[str]
    stats: tuple[str, ...]
    resolution_s: int
    span: timedelta  # evaluations read windows ending in (at - span, at]
    frame: pl.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.frame = self._select(_EMPTY)

    @property
    def keys(self) -> list[str]:
        return [_ALL, *(_LABEL + label for label in self.by)]

    def _select(self, rollups: pl.DataFrame) -> pl.DataFrame:
        wanted = (pl.col("metric_name") == self.selector.metric) & (
            pl.col("window_end") - pl.col("window_start") == pl.duration(seconds=self.resolution_s)
        )
        for label, matcher in self.selector.match.items():
            wanted &= _matches(_label(label), matcher)
        return rollups.filter(wanted).select(
            "window_end",
            "series_id",
            pl.lit(True).alias(_ALL),
            *(_label(label).alias(_LABEL + label) for label in self.by),
            *self.stats,
        )

    def add(self, rollups: pl.DataFrame) -> None:
        """Keep new rows; a row seen again (topic replays are at least once) replaces the old copy."""
        self.frame = pl.concat([self.frame, self._select(rollups)], how="vertical_relaxed").unique(
            subset=["window_end", "series_id"], keep="last", maintain_order=True
        )

    def window(self, at: datetime) -> pl.DataFrame:
        return self.frame.filter(pl.col("window_end").is_between(at - self.span, at, closed="right"))

    def prune(self, at: datetime) -> pl.DataFrame:
        """Forget rows no evaluation from `at` on reads; returns them."""
        old = pl.col("window_end") <= at - self.span
        gone, self.frame = self.frame.filter(old), self.frame.filter(~old)
        return gone


class _Term(Protocol):
    """An expression over stored rows: one value per group, as columns _all, by:<label>..., value."""

    def add(self, rollups: pl.DataFrame) -> None: ...

    def values(self, at: datetime) -> pl.DataFrame: ...

    def prune(self, at: datetime) -> None: ...


class _Value:
    def __init__(self, selection: Selection, by: list[str], resolution_s: int) -> None:
        self._field, self._over_s = selection.field, selection.over
        span = timedelta(seconds=selection.over)
        self._rows = _Rows(selection, by, _READS[selection.field], resolution_s, span)

    def add(self, rollups: pl.DataFrame) -> None:
        self._rows.add(rollups)

    def values(self, at: datetime) -> pl.DataFrame:
        rows, keys = self._rows.window(at), self._rows.keys
        if self._field == "last":  # each series' latest window first
            rows = (
                rows.filter(pl.col("last").is_not_null())
                .group_by([*keys, "series_id"])
                .agg(pl.col("last").sort_by("window_end").last())
            )
        value = _reduce(self._field, self._over_s).alias("value")
        return (
            rows.group_by(keys)
            .agg(value)
            .filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan())
        )

    def prune(self, at: datetime) -> None:
        self._rows.prune(at)


class _Ratio:
    def __init__(self, ratio: RatioExpr, resolution_s: int) -> None:
        self._numerator = _Value(ratio.numerator, ratio.by, resolution_s)
        self._denominator = _Value(ratio.denominator, ratio.by, resolution_s)
        self._keys = [_ALL, *(_LABEL + label for label in ratio.by)]

    def add(self, rollups: pl.DataFrame) -> None:
        self._numerator.add(rollups)
        self._denominator.add(rollups)

    def values(self, at: datetime) -> pl.DataFrame:
        numerator = self._numerator.values(at).rename({"value": "numerator"})
        joined = self._denominator.values(at).join(numerator, on=self._keys, how="left")
        value = _divide(pl.col("numerator").fill_null(0.0), pl.col("value")).alias("value")
        return joined.select(*self._keys, value).drop_nulls("value")

    def prune(self, at: datetime) -> None:
        self._numerator.prune(at)
        self._denominator.prune(at)


class _Absent:
    """Keeps each group's latest window end once its rows are pruned: absence has no range.

    That memory is one row per group ever seen; a group gone for good stays absent (and firing).
    """

    def __init__(self, absent: AbsentExpr, resolution_s: int) -> None:
        self._rows = _Rows(absent, absent.by, (), resolution_s, timedelta(seconds=absent.for_))
        self._keys = self._rows.keys
        self._seen = self._latest(self._rows.frame)  # groups and their latest window end, pruned rows

    def _latest(self, rows: pl.DataFrame) -> pl.DataFrame:
        return rows.group_by(self._keys).agg(pl.col("window_end").max())

    def add(self, rollups: pl.DataFrame) -> None:
        self._rows.add(rollups)

    def values(self, at: datetime) -> pl.DataFrame:
        stored = self._rows.frame.filter(pl.col("window_end") <= at).select(*self._keys, "window_end")
        seen = self._latest(pl.concat([self._seen, stored]))
        age = ((pl.lit(at) - pl.col("window_end")).dt.total_milliseconds() / 1000).alias("value")
        return seen.filter(pl.col("window_end") <= at - self._rows.span).select(*self._keys, age)

    def prune(self, at: datetime) -> None:
        gone = self._rows.prune(at).select(*self._keys, "window_end")
        self._seen = self._latest(pl.concat([self._seen, gone]))


@dataclass
class _Alert:
    """One group's alert while it is pending or firing."""

    state: str  # inactive only while its first evaluation decides
    active_at: datetime  # the first evaluation where the condition held
    value: float
    fired_at: datetime | None = None
    cleared_at: datetime | None = None  # the first evaluation where it stopped holding, while firing


class RuleRunner:
    """One rule over a stream of rollups: stores what its expression reads, evaluates, transitions."""

    def __init__(self, rule: Rule, resolution_s: int = 60) -> None:
        self.rule = rule
        self._check_windows(resolution_s)
        expr = rule.expr.kind
        self._by = expr.by
        self._term: _Term
        if isinstance(expr, AbsentExpr):
            self._term = _Absent(expr, resolution_s)
        elif isinstance(expr, RatioExpr):
            self._term = _Ratio(expr, resolution_s)
        else:
            self._term = _Value(expr, expr.by, resolution_s)
        self._alerts: dict[tuple[str, ...], _Alert] = {}
        self._evaluated_at: datetime | None = None

    def _check_windows(self, resolution_s: int) -> None:
        """The schema checks whole 60 s windows; a runner over another resolution checks its own."""
        expr = self.rule.expr.kind
        spans = {"for": self.rule.for_, "keep_firing_for": self.rule.keep_firing_for}
        if isinstance(expr, AbsentExpr):
            spans["expr.absent.for"] = expr.for_
        elif isinstance(expr, RatioExpr):
            spans["expr.ratio.numerator.over"] = expr.numerator.over
            spans["expr.ratio.denominator.over"] = expr.denominator.over
        else:
            spans["expr.value.over"] = expr.over
        for key, seconds in spans.items():
            if seconds % resolution_s:
                raise ValueError(
                    f"rule {self.rule.alert}: {key}: {seconds:g}s is not whole {resolution_s}s windows"
                )

    def add(self, rollups: pl.DataFrame) -> None:
        """Keep the rows of `rollups` (ROLLUPS_SCHEMA, any metrics and windows) the rule reads.

        Rows are kept until an evaluation has moved past the rule's range; rows older than that
        already (late arrivals) are dropped at once.
        """
        self._term.add(rollups)
        if self._evaluated_at is not None:
            self._term.prune(self._evaluated_at)

    def evaluate(self, at: datetime) -> list[dict[str, Any]]:
        """Evaluate at event time `at` (a window end) and return the transitions it caused.

        Event time only moves forward: an evaluation at or before the previous one (a replay)
        returns nothing and changes nothing.
        """
        at = _utc(at)
        if self._evaluated_at is not None and at <= self._evaluated_at:
            return []
        values = self._term.values(at)
        holding = values.filter(OPS[self.rule.op](pl.col("value"), self.rule.threshold))
        current = {tuple(row[1:-1]): row[-1] for row in holding.iter_rows()}
        events = [
            event
            for key in sorted(current.keys() | self._alerts.keys())
            if (event := self._advance(key, current.get(key), at)) is not None
        ]
        self._term.prune(at)
        self._evaluated_at = at
        return events

    def _advance(self, key: tuple[str, ...], value: float | None, at: datetime) -> dict[str, Any] | None:
        """One group's state machine step: the event, when its state changed."""
        alert = self._alerts.get(key)
        if value is None:
            assert alert is not None  # a group without a value is visited only when it has an alert
            return self._stopped(key, alert, at)
        if alert is None:
            alert = self._alerts[key] = _Alert("inactive", at, value)
        alert.value, alert.cleared_at = value, None
        if alert.state != "firing" and at - alert.active_at >= timedelta(seconds=self.rule.for_):
            return self._move(key, alert, "firing", at)
        return self._move(key, alert, "pending", at) if alert.state == "inactive" else None

    def _stopped(self, key: tuple[str, ...], alert: _Alert, at: datetime) -> dict[str, Any] | None:
        if alert.state == "pending":
            return self._move(key, alert, "inactive", at)
        alert.cleared_at = alert.cleared_at or at
        if at - alert.cleared_at >= timedelta(seconds=self.rule.keep_firing_for):
            return self._move(key, alert, "resolved", at)
        return None

    def _move(self, key: tuple[str, ...], alert: _Alert, state: str, at: datetime) -> dict[str, Any]:
        previous, alert.state = alert.state, state
        if state == "firing":
            alert.fired_at = at
        elif state in ("resolved", "inactive"):
            del self._alerts[key]
        return self._event(key, alert, previous, at)

    def _labels(self, key: tuple[str, ...]) -> dict[str, str]:
        """Group labels (empty ones dropped, as Prometheus does), then the rule's, then alertname."""
        group = {label: value for label, value in zip(self._by, key, strict=True) if value}
        return {**group, **self.rule.labels, "alertname": self.rule.alert}

    def _event(self, key: tuple[str, ...], alert: _Alert, previous: str, at: datetime) -> dict[str, Any]:
        labels = self._labels(key)
        ended = alert.state in ("resolved", "inactive")
        return {
            "status": alert.state,
            "labels": labels,
            "annotations": self.rule.annotate(labels, alert.value),
            "startsAt": rfc3339(alert.fired_at or alert.active_at),
            "endsAt": rfc3339(at) if ended else ACTIVE_ENDS_AT,
            "generatorURL": "",
            "fingerprint": fingerprint(labels),
            "state": alert.state,
            "previous_state": previous,
            "value": alert.value,
            "evaluatedAt": rfc3339(at),
        }


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def alert_rows(events: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Transition events as rows of ALERTS_SCHEMA (the `alerts` dataset); no end time while active."""
    rows = [
        {
            "time": _time(event["evaluatedAt"]),
            "alertname": event["labels"]["alertname"],
            "fingerprint": event["fingerprint"],
            "state": event["state"],
            "previous_state": event["previous_state"],
            "severity": event["labels"].get("severity"),
            "value": event["value"],
            "starts_at": _time(event["startsAt"]),
            "ends_at": None if event["endsAt"] == ACTIVE_ENDS_AT else _time(event["endsAt"]),
            "labels": list(event["labels"].items()),
            "annotations": list(event["annotations"].items()),
        }
        for event in events
    ]
    return pa.Table.from_pylist(rows, schema=ALERTS_SCHEMA)
