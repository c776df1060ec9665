"""Rule groups evaluated in event time over a stream of samples: no Kafka, no bytewax, no wall clock.

The alerts flow keeps one `GroupStream` per set of groups that read each other's recording
rules (`components`), so a recorded series is in the storage of every rule that reads it. The
stream holds the raw samples the groups need, no older than their horizon (the longest range or
lookback, plus offset, any selector reads), and evaluates each group at its own interval, at
the aligned times `k * interval` that the watermark has passed, oldest first. A quiet gap longer
than the horizon (no input sample visible) is evaluated at every interval only while one of
its alerts is pending or kept firing (`for` and `keep_firing_for` timers, e.g. of rules that
fire on absence), then once at its end: nothing else can change in between.

As Prometheus evaluates every group at every interval whatever data arrives, a stream fed by
partitioned input can follow the pipeline's event time (`observe`): each poll of each input
partition brings the newest sample time of its last record, whoever the samples were for, and
the stream's clock is the minimum over its partitions still sending, so `absent(up{job="x"})`
fires for a metric that never arrived and no evaluation runs ahead of a partition not yet read
that far. A partition that reached the end of its log and went quiet (`idle`) is left out until
it sends again; once all are idle everything in Kafka has been read and the clock is the newest
of their last records, whichever went idle last. After a restart every partition counts as
sending until it says otherwise, so a resumed stream waits for all of them as the first run
did. What each evaluation sees is therefore a function of the partitions' contents, not of when
polls happen to arrive; only samples written after every partition went idle can be late.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from promql import DEFAULT_LOOKBACK_MS, Labels, MemoryStorage
from promql.ast import Aggregate, Binary, Call, Expr, MatrixSelector, Paren, Unary, VectorSelector
from rules.evaluation import Alert, GroupEvaluator, RuleSnapshot, Transition
from rules.templates import TemplateContext
from schemas.prometheus_rules import Group

PRUNE_EVERY_MS = 60_000  # drop old samples at most once a minute of event time: pruning walks every series


def selectors(expr: Expr) -> Iterable[tuple[VectorSelector, int]]:
    """Every vector selector of an expression with the range it reads (0 for an instant selector)."""
    if isinstance(expr, VectorSelector):
        yield expr, 0
    elif isinstance(expr, MatrixSelector):
        yield expr.selector, expr.range_ms
    elif isinstance(expr, Call):
        for arg in expr.args:
            yield from selectors(arg)
    elif isinstance(expr, Aggregate):
        yield from selectors(expr.expr)
        if expr.param is not None:
            yield from selectors(expr.param)
    elif isinstance(expr, Binary):
        yield from selectors(expr.lhs)
        yield from selectors(expr.rhs)
    elif isinstance(expr, Unary | Paren):
        yield from selectors(expr.expr)


def horizon_ms(groups: Iterable[Group]) -> int:
    """How far back of an evaluation any rule of `groups` reads."""
    reach = [
        (range_ms or DEFAULT_LOOKBACK_MS) + max(selector.offset_ms, 0)
        for group in groups
        for rule in group.rules
        for selector, range_ms in selectors(rule.expr)
    ]
    return max(reach, default=DEFAULT_LOOKBACK_MS)


def metric_names(groups: Iterable[Group]) -> frozenset[str] | None:
    """The metric names the groups' selectors can match; None when one can match any name."""
    names: set[str] = set()
    for group in groups:
        for rule in group.rules:
            for selector, _range in selectors(rule.expr):
                exact = [m.value for m in selector.matchers if m.name == "__name__" and m.op == "="]
                if not exact:
                    return None
                names.add(exact[0])
    return frozenset(names)


def components(groups: list[Group]) -> list[list[Group]]:
    """Groups joined when one reads a series another records (or ALERTS), in file order."""
    parent = list(range(len(groups)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    writers: dict[str, set[int]] = {}
    for i, group in enumerate(groups):
        for rule in group.rules:
            writers.setdefault(str(rule.node.record) if not rule.is_alert else "ALERTS", set()).add(i)
    for i, group in enumerate(groups):
        reads = metric_names([group])
        sources = (
            set(range(len(groups))) if reads is None else set().union(*(writers.get(n, set()) for n in reads))
        )
        for j in sources:
            parent[root(i)] = root(j)
    joined: dict[int, list[Group]] = {}
    for i, group in enumerate(groups):
        joined.setdefault(root(i), []).append(group)
    return list(joined.values())


def group_id(group: Group) -> str:
    return f"{group.file}:{group.name}"


@dataclass
class StreamState:
    """Everything a stream keeps across a restart; pickled into bytewax snapshots."""

    storage: MemoryStorage = field(default_factory=MemoryStorage)
    alerts: dict[str, list[RuleSnapshot]] = field(default_factory=dict)  # group id -> its evaluator's
    next_eval: dict[str, int] = field(default_factory=dict)  # group id -> its next evaluation time
    newest_ms: int = 0  # newest input sample seen
    evaluated_ms: int = 0  # newest evaluation time: a sample at or before it arrived late
    pruned_ms: int = 0  # samples before this are gone
    sequence: int = 0  # next output number, the exactly-once name of a Parquet file
    part_ms: dict[str, int] = field(default_factory=dict)  # input partition -> its last record's time
    clock_ms: int = 0  # the pipeline's event time (`GroupStream.observe`); 0 before every partition spoke

    def __setstate__(self, saved: dict[str, object]) -> None:
        """Snapshots taken before the pipeline's clock existed resume with none."""
        self.__dict__.update({"part_ms": {}, "clock_ms": 0, **saved})


@dataclass(frozen=True)
class GroupTransition:
    """One alert's change of state in one evaluation, with the alert as it is after it."""

    group: Group
    transition: Transition
    alert: Alert
    previous: str  # the state before the evaluation (inactive, pending or firing)


class GroupStream:
    """Some groups over their samples: add samples, advance to a watermark, collect transitions."""

    def __init__(
        self,
        groups: list[Group],
        state: StreamState,
        default_interval_ms: int,
        context: TemplateContext,
        external_labels: dict[str, str] | None = None,
        external_url: str = "",
        parts: Sequence[str] = (),
    ) -> None:
        self.state, self.groups = state, groups
        self.parts = tuple(parts)  # the input partitions whose progress moves the clock (`observe`)
        self.idle: set[str] = set()  # not state: after a restart each partition must say so again
        self.horizon_ms = horizon_ms(groups)
        self.intervals = {group_id(g): g.interval_ms or default_interval_ms for g in groups}
        self.evaluators = {
            group_id(g): GroupEvaluator(g, state.storage, context, external_labels, external_url)
            for g in groups
        }
        for gid in set(state.next_eval) - set(self.evaluators):  # a group since removed from the files
            del state.next_eval[gid]
            state.alerts.pop(gid, None)
        for gid, evaluator in self.evaluators.items():
            saved = state.alerts.get(gid)
            if saved is not None and len(saved) == len(evaluator.states):
                evaluator.restore(saved)  # an edited group starts over: its rules no longer line up
        if state.next_eval:
            self._start(min(state.next_eval.values()))  # a group since added starts with the others

    def add(self, series: Iterable[tuple[Labels, Sequence[int], Sequence[float]]]) -> int:
        """Store each series' samples (in time order, no duplicate times, as schemas/prometheus_names
        gives them); returns how many arrived after an evaluation at or past their time (late)."""
        storage, evaluated = self.state.storage, self.state.evaluated_ms
        late, oldest, newest = 0, None, self.state.newest_ms
        for labels, times, values in series:
            if not times:
                continue
            buf = storage.series.get(labels)
            if buf is not None and buf.timestamps and times[0] > buf.timestamps[-1]:
                buf.timestamps.extend(times)  # the common case, a series already held: in bulk
                buf.values.extend(values)
                buf.arrays = None
            else:
                for t_ms, value in zip(times, values, strict=True):
                    storage.append(labels, t_ms, value)
            newest = max(newest, times[-1])
            oldest = times[0] if oldest is None else min(oldest, times[0])
            late += bisect_right(times, evaluated)
        if oldest is not None:
            self._start(oldest)
        self.state.newest_ms = newest
        return late

    def observe(self, part: str, newest_ms: int, idle: bool = False) -> None:
        """A poll of input partition `part` whose last record's newest sample is at `newest_ms` (0:
        none), or word that `part` is `idle`; the clock moves to the oldest of the partitions still
        sending, never back, and groups not yet evaluating start there."""
        if idle:
            self.idle.add(part)
        else:
            self.idle.discard(part)
            if newest_ms:
                self.state.part_ms[part] = newest_ms
        sending = [self.state.part_ms.get(p, 0) for p in self.parts if p not in self.idle]
        # all idle: every partition is read to its end, so nothing present can come after the newest
        reached = min(sending) if sending else max(self.state.part_ms.values(), default=0)
        if reached > self.state.clock_ms:
            self.state.clock_ms = reached
            self._start(reached)

    @property
    def quiet(self) -> bool:
        """Every input partition is idle: nothing in Kafka can move the clock, only wall time."""
        return self.idle.issuperset(self.parts)

    def _start(self, t_ms: int) -> None:
        """Groups not yet evaluating start at their first aligned time at or after t_ms."""
        for gid, interval in self.intervals.items():
            self.state.next_eval.setdefault(gid, -(-t_ms // interval) * interval)

    def snapshot(self) -> StreamState:
        """The state with every group's alerts as they are now."""
        for gid, evaluator in self.evaluators.items():
            self.state.alerts[gid] = evaluator.snapshot()
        return self.state

    def advance(self, watermark_ms: int) -> list[GroupTransition]:
        """Evaluate every group at each of its times up to the watermark, in time order."""
        out: list[GroupTransition] = []
        if not self.state.next_eval:
            return out
        while True:
            gid, t_ms = min(self.state.next_eval.items(), key=lambda item: (item[1], item[0]))
            if t_ms > watermark_ms:
                break
            out += self._evaluate(gid, t_ms)
            self.state.evaluated_ms = max(self.state.evaluated_ms, t_ms)
            interval = self.intervals[gid]
            following = t_ms + interval
            if t_ms - self.horizon_ms > self.state.newest_ms and not self._timing(gid):  # a quiet gap
                following = max(following, watermark_ms - watermark_ms % interval)
            self.state.next_eval[gid] = following
        self._prune(min(self.state.next_eval.values()) - self.horizon_ms)
        return out

    def _timing(self, gid: str) -> bool:
        """Whether an alert of the group waits for a timer: pending, or firing on keep_firing_for."""
        return any(
            alert.state == "pending" or (alert.state == "firing" and alert.keep_firing_since is not None)
            for state in self.evaluators[gid].states
            for alert in state.active.values()
        )

    def _evaluate(self, gid: str, t_ms: int) -> list[GroupTransition]:
        evaluator = self.evaluators[gid]
        before = {(s.rule.name, labels): a for s in evaluator.states for labels, a in s.active.items()}
        previous = {key: alert.state for key, alert in before.items()}
        result = evaluator.evaluate(t_ms)
        after = {(s.rule.name, labels): a for s in evaluator.states for labels, a in s.active.items()}
        # a `for: 0s` alert goes pending and fires in one evaluation: one transition, as Alertmanager sees it
        last: dict[tuple[str, Labels], Transition] = {}
        for transition in result.transitions:
            last[(transition.rule, transition.labels)] = transition
        out = []
        for key, transition in last.items():
            alert = after.get(key) or before[key]
            old = previous.get(key, "inactive")
            if old != transition.new:
                out.append(GroupTransition(evaluator.group, transition, alert, old))
        return out

    def _prune(self, cutoff_ms: int) -> None:
        """Forget samples no evaluation can read any more."""
        if cutoff_ms - self.state.pruned_ms < PRUNE_EVERY_MS:
            return
        storage = self.state.storage
        for labels in list(storage.series):
            buf = storage.series[labels]
            drop = bisect_left(buf.timestamps, cutoff_ms)
            if drop == len(buf.timestamps):
                del storage.series[labels]
                storage.by_name[dict(labels).get("__name__", "")].remove(labels)
            elif drop:
                del buf.timestamps[:drop], buf.values[:drop]
                buf.arrays = None
        storage.by_name = {name: ls for name, ls in storage.by_name.items() if ls}
        self.state.pruned_ms = cutoff_ms
