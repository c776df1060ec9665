"""Drop an SDK's resend: a Kafka record carrying the same key and bytes as one shortly before it.

OTLP is at least once. When the receiver dies after Kafka acknowledged a request but before it
answered, or answers UNAVAILABLE after its delivery timeout while the record is written later,
the SDK exports the same request again. Kafka's idempotent producer cannot tell: it is a new
produce. The receiver's split is deterministic (a one-agent request is forwarded byte for byte,
a several-agent one sliced at the same resource boundaries), so the resend is a record with the
same key and value, hence on the same partition (keyless records excepted: librdkafka spreads
them at random, and the SDKs always set `service.name`).

Each partition remembers a 64-bit digest of every record's key and value for `window` of Kafka
time (the producer's timestamp, so that a replay decides exactly as the first run did). A record
whose digest was seen within the window before it is dropped. The memory lives in the flow's
recovery state, snapshotted in the same epoch as the source offsets, so a flow killed and resumed
still knows what it wrote; without recovery state the flow re-reads the topic from the start and
rebuilds the same memory on the way.

Membership is a binary search of the poll's digests in sorted uint64 arrays (numpy), not a Python
set of millions of objects: 24 bytes an entry (digest, Kafka time, offset of the first copy).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import bytewax.operators as op
import numpy as np
import pyarrow as pa
from bytewax.dataflow import Stream

from flows.kafka_batches import Batch
from schemas.flatten import DeadLetters, KafkaRecord, TimeBounds, flatten

log = logging.getLogger(__name__)
_ANY_TIME = TimeBounds(max_past_s=4e9, max_future_s=4e9)  # a resend's rows are counted whatever their times
_SWEEP_SHARE = 10  # entries past the window are swept when Kafka time moved a tenth of it on
_MERGE_MIN = 4096  # entries the recent level may hold before it is merged, however small the settled one


def digest(record: KafkaRecord) -> int:
    """64 bits of SHA-256 over the key and the value: stable across processes and versions (the
    digests outlive a restart in the recovery state), and the fastest stdlib hash measured here."""
    hashed = hashlib.sha256()
    key = record.key or b""
    hashed.update(len(key).to_bytes(4, "little"))
    hashed.update(key)
    hashed.update(record.value)
    return int.from_bytes(hashed.digest()[:8], "little")


@dataclass
class SortedEntries:
    """Digests sorted, with the Kafka time of each one's latest copy and the offset of its first."""

    digests: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    times_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    offsets: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __len__(self) -> int:
        return len(self.digests)

    def find(self, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, index where) of each digest, by binary search."""
        at = np.searchsorted(self.digests, digests)
        found = at < len(self)
        found[found] = self.digests[at[found]] == digests[found]
        return found, np.where(found, at, 0)

    def add(self, other: SortedEntries) -> None:
        """Insert `other` (sorted, none already here): one copy of the arrays."""
        position = np.searchsorted(self.digests, other.digests)
        self.digests = np.insert(self.digests, position, other.digests)
        self.times_ms = np.insert(self.times_ms, position, other.times_ms)
        self.offsets = np.insert(self.offsets, position, other.offsets)

    def keep(self, mask: np.ndarray) -> None:
        self.digests, self.times_ms, self.offsets = (
            self.digests[mask],
            self.times_ms[mask],
            self.offsets[mask],
        )


@dataclass
class SeenRecords:
    """One partition's records within the window; recovery state.

    Two sorted levels, as in an LSM tree: a poll's new digests go into the small `recent` one, which
    is merged into `settled` once it holds a 64th of it. A single sorted array copied itself whole
    for every poll: 45 ms a poll at 600,000 entries (wall, load average 60), 6 ms with two levels."""

    settled: SortedEntries = field(default_factory=SortedEntries)
    recent: SortedEntries = field(default_factory=SortedEntries)
    newest_ms: int = 0
    swept_ms: int = 0  # Kafka time of the last sweep

    def __len__(self) -> int:
        return len(self.settled) + len(self.recent)

    @property
    def nbytes(self) -> int:
        levels = (self.settled, self.recent)
        return sum(int(x.digests.nbytes + x.times_ms.nbytes + x.offsets.nbytes) for x in levels)


@dataclass(frozen=True)
class Screened:
    """One poll: all its records (offset order), those kept, and for each dropped one the offset
    of the first copy."""

    records: list[KafkaRecord]
    kept: list[KafkaRecord]
    resent: dict[int, int] = field(default_factory=dict)  # offset of a dropped record -> first copy's


def screen(
    seen: SeenRecords | None, records: list[KafkaRecord], window_ms: int
) -> tuple[SeenRecords | None, Screened]:
    """Split a poll into first copies and resends (same digest within `window_ms` of Kafka time
    of an earlier record of the partition); remember the first copies."""
    if not records:
        return seen, Screened(records, records)
    seen = seen or SeenRecords()
    count = len(records)
    digests = np.fromiter((digest(r) for r in records), np.uint64, count)
    times = np.fromiter((r.timestamp_ms for r in records), np.int64, count)
    offsets = np.fromiter((r.offset for r in records), np.int64, count)
    dropped, original = np.zeros(count, bool), offsets.copy()
    for run in _distinct_runs(digests):
        dropped[run], original[run] = _screen_distinct(
            seen, digests[run], times[run], offsets[run], window_ms
        )
    seen.newest_ms = max(seen.newest_ms, int(times.max()))
    _sweep(seen, window_ms)
    kept = [r for r, drop in zip(records, dropped, strict=True) if not drop]
    resent = {int(o): int(f) for o, f in zip(offsets[dropped], original[dropped], strict=True)}
    return seen, Screened(records, kept, resent)


def _distinct_runs(digests: np.ndarray) -> list[slice]:
    """The poll cut where a digest repeats, so that each run is judged against all before it (a
    copy within one poll is rare: then a short loop, else the whole poll at once)."""
    if len(np.unique(digests)) == len(digests):
        return [slice(0, len(digests))]
    runs: list[slice] = []
    start, current = 0, set[int]()
    for index, value in enumerate(digests.tolist()):
        if value in current:
            runs.append(slice(start, index))
            start, current = index, set[int]()
        current.add(value)
    return [*runs, slice(start, len(digests))]


def _screen_distinct(
    seen: SeenRecords, digests: np.ndarray, times: np.ndarray, offsets: np.ndarray, window_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """(dropped, offset of the first copy) of records with distinct digests; updates `seen`."""
    known, anywhere, original = np.zeros(len(digests), bool), np.zeros(len(digests), bool), offsets.copy()
    for level in (seen.settled, seen.recent):  # a digest is in one level at most
        found, at = level.find(digests)
        mine = found.copy()
        mine[found] = np.abs(times[found] - level.times_ms[at[found]]) <= window_ms
        original[mine] = level.offsets[at[mine]]
        # a resend refreshes its entry's time (an SDK retrying on keeps being caught); a record
        # whose entry is stale takes it over
        level.times_ms[at[mine]] = np.maximum(level.times_ms[at[mine]], times[mine])
        stale = found & ~mine
        level.times_ms[at[stale]], level.offsets[at[stale]] = times[stale], offsets[stale]
        known |= mine
        anywhere |= found
    new = ~anywhere
    if new.any():
        order = np.argsort(digests[new])
        seen.recent.add(SortedEntries(digests[new][order], times[new][order], offsets[new][order]))
        if len(seen.recent) > max(_MERGE_MIN, len(seen.settled) // 64):
            seen.settled.add(seen.recent)
            seen.recent = SortedEntries()
    return known, original


def _sweep(seen: SeenRecords, window_ms: int) -> None:
    """Forget entries older than the window, once Kafka time moved a tenth of a window since the
    last sweep: memory stays under 1.1 windows of records, at one pass over it per tenth."""
    if seen.newest_ms - seen.swept_ms < window_ms // _SWEEP_SHARE:
        return
    for level in (seen.settled, seen.recent):
        keep = level.times_ms >= seen.newest_ms - window_ms
        if not keep.all():
            level.keep(keep)
    seen.swept_ms = seen.newest_ms


def screen_resends(step_id: str, polls: Stream[Batch], window_s: float) -> Stream[tuple[str, Screened]]:
    """Each poll screened against its partition's recent records (window 0: nothing is dropped)."""
    window_ms = int(window_s * 1000)

    def mapper(seen: SeenRecords | None, records: list[KafkaRecord]) -> tuple[SeenRecords | None, Screened]:
        if window_ms <= 0:
            return None, Screened(records, records)
        seen, screened = screen(seen, records, window_ms)
        if screened.resent:
            first = records[0]
            log.warning(
                "%s:%s: dropped %d resent records (offset -> first copy: %s)",
                first.topic,
                first.partition,
                len(screened.resent),
                screened.resent,
            )
        return seen, screened

    return op.stateful_map(step_id, polls, mapper)


def without_resends(step_id: str, polls: Stream[Batch], window_s: float) -> Stream[Batch]:
    """The polls with resends dropped, for flows that need no account of them."""
    screened = screen_resends(step_id, polls, window_s)
    return op.map(f"{step_id}_kept", screened, lambda item: (item[0], item[1].kept))


def resent_letters(screened: Screened) -> pa.Table | None:
    """A dead-letter row per dropped record: its reason names the first copy, `items` counts the
    spans, points or log records it carried (decoded only here: resends are rare), no payload
    (the first copy holds the same bytes)."""
    if not screened.resent:
        return None
    dropped = [r for r in screened.records if r.offset in screened.resent]
    counts = np.zeros(len(dropped), np.int64)
    for rows_from in flatten(dropped, _ANY_TIME).record_of_row.values():
        counts += np.bincount(rows_from, minlength=len(dropped))
    letters = DeadLetters()
    for record, items in zip(dropped, counts, strict=True):
        reason = f"resent: same key and bytes as offset {screened.resent[record.offset]}"
        letters.add(record, reason, int(items), b"")
    return letters.table()
