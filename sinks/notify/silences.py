"""Silences: Alertmanager's, with their API v2 shape, kept where every process sees them.

`Silences` is the set in memory (what the notifier asks at each flush). `KafkaSilences` keeps it
on the compacted topic `talon_silences`, keyed by silence id, one JSON document per version:
the console's API writes there (and waits for the broker's ack), and every process holding a
KafkaSilences tails the topic from its start on a thread, so a silence survives restarts and
reaches the notifier of the alerts flow, wherever that runs, within a poll. Expired silences stay
(Alertmanager keeps them for `retention`, 5 days) so `amtool silence query --expired` sees them.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from confluent_kafka import KafkaError, Producer

from schemas.config import KafkaConfig
from schemas.topics import SILENCES_TOPIC
from sinks.notify.tail import TopicTail
from talonflow.kafka_log import kafka_logger

RETENTION: Final = timedelta(days=5)  # Alertmanager's --data.retention: expired silences are kept this long
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _time(value: Any, key: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected an RFC 3339 time, not {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{key}: {value!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{key}: {value!r} has no time zone")
    return parsed.astimezone(UTC)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class SilenceMatcher:
    """One matcher of a silence, as API v2 writes it: name, value, isRegex, isEqual."""

    name: str
    value: str
    is_regex: bool
    is_equal: bool = True

    @classmethod
    def parse(cls, raw: Any, key: str) -> SilenceMatcher:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{key}: expected an object with name, value and isRegex")
        name, value = raw.get("name"), raw.get("value")
        if not isinstance(name, str) or not _LABEL.fullmatch(name):
            raise ValueError(f"{key}.name: {name!r} is not a valid label name")
        if not isinstance(value, str):
            raise ValueError(f"{key}.value: expected a string")
        is_regex, is_equal = raw.get("isRegex", False), raw.get("isEqual", True)
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise ValueError(f"{key}: isRegex and isEqual are booleans")
        if is_regex:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"{key}.value: invalid regex {value!r}: {err}") from None
        return cls(name, value, is_regex, is_equal)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        hit = re.fullmatch(self.value, actual) is not None if self.is_regex else actual == self.value
        return hit == self.is_equal

    def api(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[SilenceMatcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    updated_at: datetime

    @classmethod
    def parse(cls, raw: Any, now: datetime) -> Silence:
        """A PostableSilence; ValueError names the field. A start in the past becomes now."""
        if not isinstance(raw, Mapping):
            raise ValueError("expected a silence object")
        matchers = raw.get("matchers")
        if not isinstance(matchers, list) or not matchers:
            raise ValueError("matchers: at least one matcher is required")
        parsed = tuple(SilenceMatcher.parse(m, f"matchers[{i}]") for i, m in enumerate(matchers))
        if all(m.matches({}) for m in parsed):
            raise ValueError("matchers: at least one matcher must not match the empty string")
        starts, ends = _time(raw.get("startsAt"), "startsAt"), _time(raw.get("endsAt"), "endsAt")
        if ends < starts:
            raise ValueError("endsAt: the end must not be before the start")
        if ends <= now:
            raise ValueError("endsAt: the end must be in the future")
        created_by, comment = raw.get("createdBy"), raw.get("comment")
        if not isinstance(created_by, str) or not created_by:
            raise ValueError("createdBy: required")
        if not isinstance(comment, str) or not comment:
            raise ValueError("comment: required")
        silence_id = raw.get("id") or ""
        if not isinstance(silence_id, str):
            raise ValueError("id: expected a string")
        return cls(silence_id, parsed, max(starts, now), ends, created_by, comment, now)

    def state(self, now: datetime) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.state(now) == "active" and all(m.matches(labels) for m in self.matchers)

    def api(self, now: datetime) -> dict[str, Any]:
        """A GettableSilence."""
        return {
            "id": self.id,
            "status": {"state": self.state(now)},
            "updatedAt": rfc3339(self.updated_at),
            "matchers": [m.api() for m in self.matchers],
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
        }

    def document(self) -> bytes:
        body = self.api(self.updated_at)
        del body["status"]
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_document(cls, value: bytes) -> Silence:
        raw = json.loads(value)
        return cls(
            raw["id"],
            tuple(SilenceMatcher.parse(m, "matchers") for m in raw["matchers"]),
            _time(raw["startsAt"], "startsAt"),
            _time(raw["endsAt"], "endsAt"),
            raw["createdBy"],
            raw["comment"],
            _time(raw["updatedAt"], "updatedAt"),
        )


class Silences:
    """The silences one process knows, safe to read and write from any thread."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._by_id: dict[str, Silence] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def start(self, wait: float = 30.0) -> Silences:
        """Nothing to read for a set in memory; KafkaSilences reads its topic."""
        return self

    def close(self) -> None:
        """Nothing to release for a set in memory."""

    def _remember(self, silence: Silence) -> None:
        with self._lock:
            self._by_id[silence.id] = silence

    def _store(self, silence: Silence) -> None:
        """Keep a new version; KafkaSilences writes it to the topic first."""
        self._remember(silence)

    def get(self, silence_id: str) -> Silence | None:
        with self._lock:
            return self._by_id.get(silence_id)

    def all(self) -> list[Silence]:
        horizon = self.clock() - RETENTION
        with self._lock:
            return [s for s in self._by_id.values() if s.ends_at > horizon]

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return bool(self.silencing(labels, now))

    def silencing(self, labels: Mapping[str, str], now: datetime) -> list[str]:
        """The ids of the active silences that match `labels`."""
        with self._lock:
            return sorted(s.id for s in self._by_id.values() if s.mutes(labels, now))

    def put(self, raw: Any) -> Silence:
        """Create, or update when `id` names a silence that has not expired (Alertmanager
        replaces an expired one by a new id). ValueError names what is wrong."""
        now = self.clock()
        silence = Silence.parse(raw, now)
        existing = self.get(silence.id) if silence.id else None
        if silence.id and existing is None:
            raise ValueError(f"id: silence {silence.id} not found")
        if existing is None or existing.state(now) == "expired":
            silence = replace(silence, id=str(uuid.uuid4()))
        elif existing.state(now) == "active":
            silence = replace(silence, starts_at=existing.starts_at)  # an active silence keeps its start
        self._store(silence)
        return silence

    def expire(self, silence_id: str) -> Silence:
        """End a silence now; KeyError when unknown, ValueError when it already expired."""
        now = self.clock()
        existing = self.get(silence_id)
        if existing is None:
            raise KeyError(silence_id)
        if existing.state(now) == "expired":
            raise ValueError(f"silence {silence_id} already expired")
        start = now if existing.state(now) == "pending" else existing.starts_at
        expired = replace(existing, starts_at=start, ends_at=now, updated_at=now)
        self._store(expired)
        return expired


class KafkaSilences(Silences):
    """Silences on the compacted `talon_silences` topic: written with acks=all, tailed from its start."""

    def __init__(self, kafka: KafkaConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(clock)
        self._kafka = kafka
        self._producer: Producer | None = None
        self._tail = TopicTail(
            kafka, SILENCES_TOPIC, lambda value: self._remember(Silence.from_document(value))
        )
        self._users = 0

    def start(self, wait: float = 30.0) -> KafkaSilences:
        """Read the stored silences (waiting up to `wait` s for all of them: a restart knows them),
        then keep tailing; once, however many users (the API and its notifier) start it."""
        with self._lock:
            self._users += 1
            first = self._users == 1
        if first:
            self._tail.start(wait)
        return self

    def close(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self._tail.close()
            if self._producer is not None:
                self._producer.flush(10)

    def _store(self, silence: Silence) -> None:
        if self._producer is None:
            self._producer = Producer(
                {
                    "bootstrap.servers": self._kafka.bootstrap_servers,
                    "acks": "all",
                    "enable.idempotence": True,
                    "logger": kafka_logger("talonflow.silences"),
                }
            )
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Any) -> None:
            if error is not None:
                failures.append(error.str())

        self._producer.produce(SILENCES_TOPIC, silence.document(), silence.id.encode(), on_delivery=delivered)
        if self._producer.flush(10) or failures:
            raise OSError(f"silences: not stored on {SILENCES_TOPIC}: {failures or 'timed out'}")
        self._remember(silence)
