"""Alertmanager's API v2, the subset `amtool` uses, on the console's port.

    GET/POST /api/v2/alerts, GET/POST /api/v2/silences, GET/DELETE /api/v2/silence/{id},
    GET /api/v2/status, GET /api/v2/receivers

Silences live on the compacted topic `talon_silences` (sinks/notify/silences.py): what this API
adds or expires is what every notifier holds back, and a restart of any process keeps them.
The alerts listed are the firing ones of `talon_alerts` (the flows' transitions, read from the
topic's start) and those POSTed here, each with the receivers its labels route to and whether a
silence or an inhibit rule suppresses it. POSTed alerts are recorded on `talon_alerts` like the
flows' and notified by this process's notifier, as Alertmanager does for Prometheus' alerts;
one without `endsAt` resolves `global.resolve_timeout` after it was last posted. Once its
`endsAt` has passed an alert is no longer listed, and the notifier sends it as resolved at its
group's next flush (sinks/notify/alerts.py `Alert.as_of`), unless it was posted again.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import yaml
from aiohttp import web
from confluent_kafka import Producer

from schemas.config import TalonflowConfig
from schemas.notify import Matcher
from schemas.topics import ALERTS_TOPIC
from sinks.notify import Notifier
from sinks.notify.alerts import ZERO_TIME, Alert
from sinks.notify.inhibition import Inhibitor
from sinks.notify.routing import RouteNode
from sinks.notify.silences import KafkaSilences, rfc3339
from sinks.notify.tail import TopicTail
from talonflow.kafka_log import kafka_logger

VERSION: Final = "0.25.0-talonflow"  # the Alertmanager API version this subset follows
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _error(status: int, message: str) -> web.Response:
    """go-swagger's error body: a JSON string."""
    return web.json_response(message, status=status)


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps("the body is not JSON"), content_type="application/json"
        ) from None


def _when(text: str) -> datetime:
    """A time without an offset is UTC, as go-openapi's strfmt reads one (naive and aware times do not
    compare, which was a 500 for a POSTed alert: found by bench/fuzz.py)."""
    if not text or text.startswith("0001-01-01"):
        return datetime.min.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _posted_time(item: dict[str, Any], field: str) -> datetime:
    value = item.get(field) or ""
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected an RFC 3339 time, not {value!r}")
    try:
        return _when(value)
    except ValueError as err:
        raise ValueError(f"{field}: {err}") from None


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "true").lower()
    if value not in ("true", "false"):
        message = json.dumps(f"{name}: expected true or false, not {value!r}")
        raise web.HTTPBadRequest(text=message, content_type="application/json")
    return value == "true"


def _filters(request: web.Request) -> list[Matcher]:
    try:
        return [Matcher.model_validate(text) for text in request.query.getall("filter", [])]
    except ValueError as err:
        raise web.HTTPBadRequest(text=json.dumps(f"filter: {err}"), content_type="application/json") from None


class AlertmanagerApi:
    """The state behind the routes: silences, the alerts seen, a notifier for POSTed alerts."""

    def __init__(
        self, config: TalonflowConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.config, self.clock = config, clock
        notifications = config.notifications
        self.silences = KafkaSilences(config.kafka, clock)
        self.tree = RouteNode.root(notifications.route)
        self.inhibitor = Inhibitor(notifications.inhibit_rules)
        self.alerts: dict[str, tuple[Alert, datetime]] = {}  # fingerprint → (latest, when it was updated)
        self.notifier = Notifier(notifications, external_url=config.console.url, silences=self.silences)
        self._tail = TopicTail(config.kafka, ALERTS_TOPIC, self._transition)
        self._producer: Producer | None = None
        self._started = time.time()

    def _transition(self, value: bytes) -> None:
        document = json.loads(value)
        if document.get("status") not in ("firing", "resolved"):
            return  # pending and inactive transitions: not alerts Alertmanager would hold
        alert = Alert.parse(document)
        self.inhibitor.observe(alert)
        updated = document.get("evaluatedAt") or document.get("updatedAt") or alert.starts_at
        self.alerts[alert.fingerprint] = (alert, _when(updated))

    async def start(self, _app: web.Application) -> None:
        """Start reading both topics without waiting for them: the console serves its pages even
        while Kafka is away, and this API answers from what it has read so far."""
        self.silences.start(wait=0)
        self._tail.start(timeout=0)
        self.notifier.start()

    async def stop(self, _app: web.Application) -> None:
        self.notifier.close()
        await asyncio.to_thread(self._tail.close)
        await asyncio.to_thread(self.silences.close)
        if self._producer is not None:
            self._producer.flush(10)

    # -- alerts -----------------------------------------------------------------------------------
    def active(self, alert: Alert, now: datetime) -> bool:
        return alert.firing and (alert.ends_at == ZERO_TIME or _when(alert.ends_at) > now)

    def gettable(self, alert: Alert, updated: datetime, now: datetime) -> dict[str, Any]:
        silenced = self.silences.silencing(alert.labels, now)
        inhibited = self.inhibitor.inhibited(alert)
        receivers = [r.receiver for r in self.tree.match(alert.labels) if r.receiver]
        return {
            "labels": alert.labels,
            "annotations": alert.annotations,
            "startsAt": alert.starts_at,
            "endsAt": alert.ends_at,
            "updatedAt": rfc3339(updated),
            "generatorURL": alert.generator_url,
            "fingerprint": alert.fingerprint,
            "receivers": [{"name": name} for name in dict.fromkeys(receivers)],
            "status": {
                "state": "suppressed" if silenced or inhibited else "active",
                "silencedBy": silenced,
                "inhibitedBy": [],  # which alert inhibits is not tracked, only that one does
            },
        }

    async def get_alerts(self, request: web.Request) -> web.Response:
        now = self.clock()
        show_active, show_silenced, show_inhibited = (
            _flag(request, n) for n in ("active", "silenced", "inhibited")
        )
        filters = _filters(request)
        receiver = re.compile(request.query.get("receiver") or ".*")  # amtool sends receiver= empty
        out = []
        for alert, updated in list(self.alerts.values()):
            if not self.active(alert, now) or not all(m.matches(alert.labels) for m in filters):
                continue
            item = self.gettable(alert, updated, now)
            status = item["status"]
            if (
                (status["state"] == "active" and not show_active)
                or (status["silencedBy"] and not show_silenced)
                or (status["state"] == "suppressed" and not status["silencedBy"] and not show_inhibited)
                or not any(receiver.fullmatch(r["name"]) for r in item["receivers"])
            ):
                continue
            out.append(item)
        out.sort(key=lambda a: (a["startsAt"], a["fingerprint"]))
        return web.json_response(out)

    async def post_alerts(self, request: web.Request) -> web.Response:
        raw = await _body(request)
        if not isinstance(raw, list):
            return _error(400, "expected a list of alerts")
        now = self.clock()
        resolve = timedelta(seconds=self.config.notifications.global_.resolve_timeout)
        documents = []
        for index, item in enumerate(raw):
            try:
                documents.append(_posted(item, now, resolve))
            except ValueError as err:
                return _error(400, f"alerts[{index}]: {err}")
        await asyncio.to_thread(self._record, documents)
        for document in documents:
            self._transition(json.dumps(document).encode())
            self.notifier.submit(document)
        return web.json_response(None)

    def _record(self, documents: list[dict[str, Any]]) -> None:
        if self._producer is None:
            servers = self.config.kafka.bootstrap_servers
            self._producer = Producer(
                {"bootstrap.servers": servers, "acks": "all", "logger": kafka_logger("console.kafka")}
            )
        for document in documents:
            self._producer.produce(
                ALERTS_TOPIC, json.dumps(document).encode(), document["fingerprint"].encode()
            )
        if self._producer.flush(10):
            raise web.HTTPServiceUnavailable(text=json.dumps(f"{ALERTS_TOPIC}: Kafka did not acknowledge"))

    # -- silences ---------------------------------------------------------------------------------
    async def get_silences(self, request: web.Request) -> web.Response:
        now, filters = self.clock(), _filters(request)
        found = []
        for silence in self.silences.all():
            labels = {m.name: m.value for m in silence.matchers}
            if all(f.matches(labels) for f in filters):
                found.append(silence.api(now))
        order = {"active": 0, "pending": 1, "expired": 2}
        found.sort(key=lambda s: (order[s["status"]["state"]], s["endsAt"]))
        return web.json_response(found)

    async def post_silences(self, request: web.Request) -> web.Response:
        raw = await _body(request)
        try:
            silence = await asyncio.to_thread(self.silences.put, raw)
        except ValueError as err:
            status = 404 if str(err).startswith("id: silence") else 400
            return _error(status, str(err))
        except OSError as err:
            return _error(503, str(err))
        return web.json_response({"silenceID": silence.id})

    async def get_silence(self, request: web.Request) -> web.Response:
        silence = self.silences.get(request.match_info["id"])
        if silence is None:
            return _error(404, f"silence {request.match_info['id']} not found")
        return web.json_response(silence.api(self.clock()))

    async def delete_silence(self, request: web.Request) -> web.Response:
        try:
            await asyncio.to_thread(self.silences.expire, request.match_info["id"])
        except KeyError:
            return _error(404, f"silence {request.match_info['id']} not found")
        except ValueError as err:
            return _error(400, str(err))
        except OSError as err:
            return _error(503, str(err))
        return web.json_response(None)

    # -- about ------------------------------------------------------------------------------------
    async def status(self, _request: web.Request) -> web.Response:
        original = self.config.notifications.model_dump(mode="json", by_alias=True)
        return web.json_response(
            {
                "cluster": {"status": "disabled", "peers": []},
                "versionInfo": {
                    "version": VERSION,
                    "revision": "",
                    "branch": "",
                    "buildUser": "talonflow",
                    "buildDate": "",
                    "goVersion": "",
                },
                "config": {"original": yaml.safe_dump(original, sort_keys=False)},  # secrets print as ****
                "uptime": rfc3339(datetime.fromtimestamp(self._started, UTC)),
            }
        )

    async def receivers(self, _request: web.Request) -> web.Response:
        return web.json_response([{"name": r.name} for r in self.config.notifications.receivers])


def _posted(item: Any, now: datetime, resolve: timedelta) -> dict[str, Any]:
    """A PostableAlert as a transition document in talon_alerts' shape; ValueError names the field."""
    if not isinstance(item, dict):
        raise ValueError("expected an alert object")
    labels = item.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError("labels: at least one label is required")
    for name, value in labels.items():
        if not _LABEL.fullmatch(str(name)) or not isinstance(value, str) or not value:
            raise ValueError(f"labels: invalid label {name}={value!r}")
    annotations = item.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ValueError("annotations: expected an object of strings")
    for name, value in annotations.items():  # a LabelSet, as Alertmanager's Alert.Validate checks
        if not _LABEL.fullmatch(name) or not isinstance(value, str):
            raise ValueError(f"annotations: invalid annotation {name}={value!r}")
    zero = datetime.min.replace(tzinfo=UTC)  # amtool sends Go's zero time for "not set"
    starts, ends = _posted_time(item, "startsAt"), _posted_time(item, "endsAt")
    if starts == zero:  # as Alertmanager's postAlertsHandler: an alert given only its end starts there
        starts = now if ends == zero else ends
    ends = now + resolve if ends == zero else ends
    if ends < starts:
        raise ValueError("endsAt: before startsAt")
    firing = ends > now
    alert = Alert.parse(
        {
            "status": "firing" if firing else "resolved",
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(starts),
            "endsAt": rfc3339(ends),
            "generatorURL": item.get("generatorURL") or "",
        }
    )
    return {
        **alert.payload(),
        "state": alert.status,
        "previous_state": "inactive" if firing else "firing",
        "evaluatedAt": rfc3339(now),
    }


AM_API: web.AppKey[AlertmanagerApi] = web.AppKey("alertmanager_api", AlertmanagerApi)


def add_alertmanager_api(app: web.Application, config: TalonflowConfig) -> None:
    """Serve the API on `app`; its Kafka readers and notifier start and stop with the app."""
    api = app[AM_API] = AlertmanagerApi(config)
    app.on_startup.append(api.start)
    app.on_cleanup.append(api.stop)
    app.router.add_get("/api/v2/alerts", api.get_alerts)
    app.router.add_post("/api/v2/alerts", api.post_alerts)
    app.router.add_get("/api/v2/silences", api.get_silences)
    app.router.add_post("/api/v2/silences", api.post_silences)
    app.router.add_get("/api/v2/silence/{id}", api.get_silence)
    app.router.add_delete("/api/v2/silence/{id}", api.delete_silence)
    app.router.add_get("/api/v2/status", api.status)
    app.router.add_get("/api/v2/receivers", api.receivers)
