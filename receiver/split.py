"""Cut an OTLP export request into Kafka records keyed by resource identity.

The bytes are forwarded, not re-encoded: an export request is a sequence of top-level
length-delimited `resource_x` entries, and any subsequence of them is itself a valid request.
So a request is split by slicing its wire bytes at entry boundaries, and a request whose
resources all share one key is forwarded as it arrived. Only a resource larger than a Kafka
record is rebuilt, one scope at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

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


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _skip(buf: bytes, pos: int, tag: int) -> int:
    """The position after the value of a field with this tag."""
    wire_type = tag & 7
    if wire_type == 2:
        length, pos = _varint(buf, pos)
        return pos + length
    if wire_type == 0:
        return _varint(buf, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 5:
        return pos + 4
    if wire_type == 3:  # a group: OTLP has none, but upb keeps one as an unknown field (fuzzing found it)
        while True:
            inner, pos = _varint(buf, pos)
            if inner == tag + 1:  # its end-group tag: same field number, wire type 4
                return pos
            pos = _skip(buf, pos, inner)
    raise ValueError(f"unexpected wire type {wire_type}")  # upb refuses these: unreachable after a parse


def top_level_entries(buf: bytes) -> list[tuple[int, int, int]]:
    """(field number, start, end) of each top-level field; `buf` must already have parsed cleanly."""
    entries = []
    pos, end = 0, len(buf)
    while pos < end:
        start = pos
        tag, pos = _varint(buf, pos)
        pos = _skip(buf, pos, tag)
        entries.append((tag >> 3, start, pos))
    return entries


def resource_key(resource: Any) -> bytes | None:
    """`service.name/service.instance.id` of a Resource, or None when it has neither."""
    name = instance = ""
    for attribute in resource.attributes:
        if attribute.key == SERVICE_NAME:
            name = attribute.value.string_value
        elif attribute.key == SERVICE_INSTANCE_ID:
            instance = attribute.value.string_value
    if not name and not instance:
        return None
    return f"{name}/{instance}".encode()


def split_request(signal: Signal, body: bytes, request: Message, max_record_bytes: int) -> Split:
    """Group the request's resources by key into records of at most `max_record_bytes`."""
    resources = getattr(request, signal.resources_field)
    # Field 1 is resource_x in all three. A field 1 of another wire type is an unknown field to upb
    # (the tag's first byte holds the wire type), so it must not shift the resources' indexes.
    entries = [e for e in top_level_entries(body) if e[0] == 1 and body[e[1]] & 7 == 2]
    keys = [resource_key(r.resource) for r in resources]
    if len(set(keys)) == 1 and len(entries) == len(resources) and len(body) <= max_record_bytes:
        items = sum(signal.count_items(getattr(r, signal.scopes_field)) for r in resources)
        return Split([Record(keys[0], body, items)] if resources else [])

    groups: dict[bytes | None, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    split = Split()
    for key, indexes in groups.items():
        parts: list[tuple[bytes, int]] = []  # (request bytes holding one resource, items)
        for index in indexes:
            _, start, end = entries[index]
            scopes = getattr(resources[index], signal.scopes_field)
            if end - start <= max_record_bytes:
                parts.append((body[start:end], signal.count_items(scopes)))
            else:
                parts.extend(_split_by_scope(signal, resources[index], max_record_bytes, split))
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
