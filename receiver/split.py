"""Cut an OTLP export request into Kafka records keyed by resource identity.

The bytes are forwarded, not re-encoded: an export request is a sequence of top-level
length-delimited `resource_x` entries, and any subsequence of them is itself a valid request.
So a request is split by slicing its wire bytes at entry boundaries, and a request whose
resources all share one key is forwarded as it arrived. Where the entries lie, their keys and
item counts come from the native `outline`, which checks the request as upb would parse it
without building Python messages (upb's decode was most of the receiver's work on a 1000-span
request). Only a resource larger than a Kafka record is decoded and rebuilt, one scope at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from talonflow_native import outline

from receiver.signals import Signal
from schemas.topics import SERVICE_INSTANCE_ID, SERVICE_NAME


@dataclass
class Record:
    key: bytes | None
    value: bytes
    items: int


@dataclass
class Split:
    records: list[Record] = field(default_factory=list)
    rejected_items: int = 0
    rejected_reason: str = ""


def split_request(signal: Signal, body: bytes, max_record_bytes: int) -> Split:
    """Group the request's resources by key into records of at most `max_record_bytes`.
    ValueError with the reason when the body is not a valid export request."""
    entries = outline(signal.name, body, SERVICE_NAME, SERVICE_INSTANCE_ID)
    keys = {key for _, _, key, _ in entries}
    if len(keys) == 1 and len(body) <= max_record_bytes:
        return Split([Record(keys.pop(), body, sum(items for *_, items in entries))])

    groups: dict[bytes | None, list[tuple[int, int, int]]] = {}
    for start, end, key, items in entries:
        groups.setdefault(key, []).append((start, end, items))
    split = Split()
    for key, spans in groups.items():
        parts: list[tuple[bytes, int]] = []  # (request bytes holding one resource, items)
        for start, end, items in spans:
            if end - start <= max_record_bytes:
                parts.append((body[start:end], items))
            else:  # one entry is itself a request of one resource
                resource = getattr(signal.request.FromString(body[start:end]), signal.resources_field)[0]
                parts.extend(_split_by_scope(signal, resource, max_record_bytes, split))
        split.records.extend(_pack(key, parts, max_record_bytes))
    return split


def _split_by_scope(signal: Signal, resource: Any, limit: int, split: Split) -> list[tuple[bytes, int]]:
    """Re-encode one oversized resource as one request per scope; reject scopes that still do not fit."""
    parts = []
    for scope in getattr(resource, signal.scopes_field):
        single = signal.request()
        one = getattr(single, signal.resources_field).add()
        one.resource.CopyFrom(resource.resource)
        one.schema_url = resource.schema_url
        getattr(one, signal.scopes_field).append(scope)
        encoded = single.SerializeToString()
        items = signal.count_items([scope])
        if len(encoded) <= limit:
            parts.append((encoded, items))
        else:
            split.rejected_items += items
            split.rejected_reason = (
                f"a single scope of {len(encoded)} bytes exceeds the Kafka record limit of {limit} bytes"
            )
    return parts


def _pack(key: bytes | None, parts: list[tuple[bytes, int]], limit: int) -> list[Record]:
    """Concatenate consecutive single-resource requests into records no larger than `limit`."""
    records: list[Record] = []
    chunk: list[bytes] = []
    size = items = 0
    for encoded, count in parts:
        if chunk and size + len(encoded) > limit:
            records.append(Record(key, b"".join(chunk), items))
            chunk, size, items = [], 0, 0
        chunk.append(encoded)
        size += len(encoded)
        items += count
    if chunk:
        records.append(Record(key, b"".join(chunk), items))
    return records
