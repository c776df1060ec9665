"""Samples with explicit timestamps, checked across scrapes as Prometheus' TSDB checks them.

A target that exposes `name value <timestamp>` and is scraped again before it changes sends the
same sample twice. Prometheus stores a sample once per series and timestamp: the same value again
is dropped silently, another value at that timestamp is a duplicate-timestamp error, and an older
timestamp is out of order; both errors are counted. Only series that carry a timestamp are
remembered, and only those of the latest scrape, so the state stays as small as that.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

_BITS = struct.Struct("<d")  # values compare bit for bit: a repeated NaN is the same sample


@dataclass
class Verdicts:
    """How many timestamped samples this scrape dropped, by reason."""

    repeated: int = 0  # same timestamp and value as already sent: silently dropped
    duplicate_timestamp: int = 0  # same timestamp, another value
    out_of_order: int = 0  # older than the series' last sample

    @property
    def rejected(self) -> int:
        return self.duplicate_timestamp + self.out_of_order


@dataclass
class TimestampGuard:
    """One target's last (timestamp in ms, value bits) per series that had an explicit timestamp."""

    last: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    pending: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # until the scrape is in Kafka

    def filter(self, families: list[Any]) -> Verdicts:
        """Drop from `families` (prometheus_client Metrics, in place) what Prometheus would not store.

        What was kept is remembered only at `commit`, once the scrape reached Kafka: a scrape
        that fails later must not make its samples look already sent."""
        verdicts, seen = Verdicts(), dict[int, tuple[int, bytes]]()
        for family in families:
            if not any(s.timestamp is not None for s in family.samples):
                continue
            kept = []
            for sample in family.samples:
                if sample.timestamp is None:
                    kept.append(sample)
                    continue
                key = hash((sample.name, frozenset(sample.labels.items())))
                now = (round(float(sample.timestamp) * 1000), _BITS.pack(sample.value))
                before = self.last.get(key)
                seen[key] = now if before is None or now[0] > before[0] else before
                if before is None or now[0] > before[0]:
                    kept.append(sample)
                elif now[0] < before[0]:
                    verdicts.out_of_order += 1
                elif now[1] == before[1]:
                    verdicts.repeated += 1
                else:
                    verdicts.duplicate_timestamp += 1
            family.samples = kept
        families[:] = [f for f in families if f.samples]
        self.pending = seen
        return verdicts

    def commit(self) -> None:
        self.last, self.pending = self.pending, {}
