"""Routing, grouping, deduplication and delivery, on an asyncio loop in a daemon thread.

Alertmanager's dispatcher, in small: each alert goes to the routes it matches; per route it joins
the aggregation group of its `group_by` label values. A new group waits `group_wait`, then is
flushed every `group_interval`. At a flush each integration of the route's receiver is sent the
group only if it has news for it (Alertmanager's notification log): a firing alert it was not told
about, a resolved one (with `send_resolved`), the group's end, or `repeat_interval` passed while
firing. Resolved alerts leave the group once every integration has them; an empty group ends.
Integrations are sent concurrently, each retried with backoff on its own: a slow one delays no other.

What Alertmanager holds back is held back at the flush, as its pipeline does: alerts that a
silence matches or an inhibit rule inhibits leave the notification (and the notification log),
and a route inside one of its `mute_time_intervals`, or outside its `active_time_intervals`,
sends nothing; the transitions themselves are still recorded by the flows on `talon_alerts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from schemas.notify import NotifyConfig
from schemas.timeintervals import active
from sinks.notify.alerts import Alert, Notification
from sinks.notify.channels import Channel, DeliveryError, channels
from sinks.notify.inhibition import Inhibitor
from sinks.notify.routing import RouteNode
from sinks.notify.silences import Silences
from sinks.notify.templating import TemplateSet

log = logging.getLogger(__name__)


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.notifications = Counter(
            "talonflow_notifications",
            "Notifications by receiver and integration; outcome sent or failed (after retries).",
            ["receiver", "integration", "outcome"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "talonflow_notify_alerts",
            "Submitted alert transitions; outcome accepted, invalid or dropped (queue full).",
            ["outcome"],
            registry=self.registry,
        )
        self.suppressed = Counter(
            "talonflow_notify_suppressed",
            "Alerts held back at a flush; reason silenced, inhibited or time_interval.",
            ["reason"],
            registry=self.registry,
        )


@dataclass(frozen=True)
class Sent:
    """What an integration was last told about a group: Alertmanager's notification log entry."""

    firing: frozenset[str]
    resolved: frozenset[str]
    at: float


def needs_update(last: Sent | None, now: Sent, send_resolved: bool, repeat_interval: float) -> bool:
    """Whether the group has news for an integration (Alertmanager's DedupStage)."""
    if last is None:
        return bool(now.firing)
    if not now.firing <= last.firing:
        return True  # a firing alert it was not told about
    if not now.firing:
        return bool(last.firing)  # all resolved: tell once
    if send_resolved and not now.resolved <= last.resolved:
        return True
    return now.at - last.at >= repeat_interval


@dataclass
class Group:
    """An aggregation group: one route's alerts that share the route's `group_by` label values."""

    key: str
    route: RouteNode
    labels: dict[str, str]
    alerts: dict[str, Alert] = field(default_factory=dict)  # by fingerprint
    sent: dict[str, Sent] = field(default_factory=dict)  # by channel name
    task: asyncio.Task[None] | None = None


class Notifier:
    """Sends alerts to the configured receivers. `submit` from any thread; `start` and `close` once."""

    def __init__(
        self,
        config: NotifyConfig,
        *,
        external_url: str = "",
        registry: CollectorRegistry | None = None,
        timeout: float = 10.0,
        attempts: int = 5,
        backoff: float = 1.0,
        queue_size: int = 10_000,
        silences: Silences | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.metrics = NotifyMetrics(registry)
        self._tree = RouteNode.root(config.route)
        templates = TemplateSet(config.template_files())
        self._receivers = {r.name: channels(r, timeout, templates) for r in config.receivers}
        self._inhibitor = Inhibitor(config.inhibit_rules)
        self._intervals = config.all_time_intervals
        self._silences, self._clock = silences or Silences(), clock
        self._external_url, self._timeout = external_url, timeout
        self._attempts, self._backoff = attempts, backoff
        self._inbox: queue.Queue[Mapping[str, Any]] = queue.Queue(queue_size)
        self._groups: dict[str, Group] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._http: aiohttp.ClientSession | None = None

    # -- any thread -------------------------------------------------------------------------------
    def submit(self, alert: Mapping[str, Any]) -> None:
        """Queue one firing/resolved transition; never blocks or raises (a full queue drops it).

        The mapping is read later on the notifier's thread: do not change it after submitting.
        """
        try:
            self._inbox.put_nowait(alert)
        except queue.Full:
            self.metrics.alerts.labels("dropped").inc()
            log.warning("notify: queue full, an alert transition was dropped")
            return
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing reads the queue now
                loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        """Start the delivery thread; alerts submitted before are handled now."""
        if self._thread is not None:
            raise RuntimeError("notifier already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main(ready)), name="talonflow-notify", daemon=True
        )
        self._silences.start()
        self._thread.start()
        ready.wait()

    def close(self, timeout: float = 10.0) -> None:
        """Stop delivering. Groups still inside group_wait or retrying are dropped, as on an AM restart."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._closing = True
        with contextlib.suppress(RuntimeError):  # already stopped
            loop.call_soon_threadsafe(self._wake.set)
        thread.join(timeout)
        self._silences.close()

    def __enter__(self) -> Notifier:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- the loop's thread ------------------------------------------------------------------------
    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout)) as http:
                self._http = http
                ready.set()
                while True:
                    self._drain()
                    if self._closing:
                        break
                    await self._wake.wait()
                    self._wake.clear()
                tasks = [g.task for g in self._groups.values() if g.task]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            ready.set()

    def _drain(self) -> None:
        while True:
            try:
                raw = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                alert = Alert.parse(raw)
            except ValueError as err:
                self.metrics.alerts.labels("invalid").inc()
                log.warning("notify: ignored an invalid alert: %s", err)
                continue
            self.metrics.alerts.labels("accepted").inc()
            self._inhibitor.observe(alert)
            self._accept(alert)

    def _accept(self, alert: Alert) -> None:
        for route in self._tree.match(alert.labels):
            if route.receiver is None:
                continue  # no receivers configured
            labels = route.group_labels(alert.labels)
            key = route.group_key(labels)
            group = self._groups.get(key)
            if not alert.firing and (group is None or alert.fingerprint not in group.alerts):
                continue  # resolves nothing this route holds: a repeat, or never notified
            if group is None:
                group = self._groups[key] = Group(key, route, labels)
                group.task = asyncio.create_task(self._run(group), name=f"notify {key}")
            group.alerts[alert.fingerprint] = alert

    async def _run(self, group: Group) -> None:
        await asyncio.sleep(group.route.group_wait)
        while True:
            await self._flush(group)
            if not group.alerts:
                del self._groups[group.key]
                return
            await asyncio.sleep(group.route.group_interval)

    def _held_back(self, group: Group) -> list[Alert]:
        """The group's alerts that may be notified now (Alertmanager's mute stages)."""
        now = self._clock()
        route = group.route
        muted = [self._intervals[n] for n in route.mute_time_intervals]
        allowed = [self._intervals[n] for n in route.active_time_intervals]
        if (muted and active(muted, now)) or (allowed and not active(allowed, now)):
            self.metrics.suppressed.labels("time_interval").inc(len(group.alerts))
            return []
        shown = []
        for alert in (a.as_of(now) for a in group.alerts.values()):
            if alert.firing and self._silences.mutes(alert.labels, now):
                self.metrics.suppressed.labels("silenced").inc()
            elif alert.firing and self._inhibitor.inhibited(alert):
                self.metrics.suppressed.labels("inhibited").inc()
            else:
                shown.append(alert)
        return shown

    async def _flush(self, group: Group) -> None:
        alerts = sorted(self._held_back(group), key=lambda a: sorted(a.labels.items()))
        if not alerts:
            return
        firing = frozenset(a.fingerprint for a in alerts if a.firing)
        state = Sent(firing, frozenset(a.fingerprint for a in alerts) - firing, time.monotonic())
        receiver = group.route.receiver or ""
        done = await asyncio.gather(
            *(self._notify(group, channel, alerts, state) for channel in self._receivers[receiver])
        )
        if all(done):  # else resolved alerts stay, so the next flush tells the integration that missed them
            now = self._clock()
            for alert in alerts:
                held = group.alerts.get(alert.fingerprint)
                if not alert.firing and held is not None and held.as_of(now) == alert:
                    del group.alerts[alert.fingerprint]

    async def _notify(self, group: Group, channel: Channel, alerts: list[Alert], state: Sent) -> bool:
        """Tell one integration about the group if it has news; False when that failed."""
        if not needs_update(
            group.sent.get(channel.name), state, channel.send_resolved, group.route.repeat_interval
        ):
            return True
        shown = alerts if channel.send_resolved else [a for a in alerts if a.firing]
        if shown:
            note = Notification(
                group.route.receiver or "", group.key, group.labels, shown, self._external_url
            )
            if not await self._deliver(channel, note):
                return False
        group.sent[channel.name] = state
        return True

    async def _deliver(self, channel: Channel, note: Notification) -> bool:
        assert self._http is not None
        counter = self.metrics.notifications
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._backoff, max=60),
                retry=retry_if_exception(lambda err: isinstance(err, DeliveryError) and err.retry),
                before_sleep=lambda state: _log_retry(note.receiver, channel.name, state),
                reraise=True,
            ):
                with attempt:
                    await channel.send(note, self._http)
        except DeliveryError as err:
            log.warning("notify: %s/%s not delivered: %s", note.receiver, channel.name, err)
        except Exception:  # a bug must not stop the group: log it, count it, go on
            log.exception("notify: %s/%s failed", note.receiver, channel.name)
        else:
            counter.labels(note.receiver, channel.kind, "sent").inc()
            return True
        counter.labels(note.receiver, channel.kind, "failed").inc()
        return False


def _log_retry(receiver: str, channel: str, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0
    log.info(
        "notify: %s/%s attempt %d: %s; again in %.1fs", receiver, channel, state.attempt_number, error, wait
    )
