"""A faster reader of the text exposition formats, returning prometheus_client's own Metric objects.

Hand-written because prometheus_client's parsers walk every label character in Python: on a
1,000-series target they spent 75% of a scrape's CPU (18 ms; 43k samples per CPU-second, below
the 67k/s goal). One compiled regex per line and one per label set do the same in C. It reads
text 0.0.4 and OpenMetrics 1.0 (HELP, TYPE, UNIT, EOF, exemplars skipped) and groups samples into
families by their TYPE line and its suffixes, as prometheus_client does; anything it cannot read
is a ValueError, so a scrape fails the same way it would with the library parser.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

_SAMPLE: Final = re.compile(
    r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?[ \t]+(\S+)(?:[ \t]+(\S+))?[ \t]*'
    r"(?:#.*)?"  # an OpenMetrics exemplar
)
_PAIR: Final = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"')
_LABELS: Final = re.compile(rf"[ \t]*{_PAIR.pattern}[ \t]*(?:,[ \t]*{_PAIR.pattern}[ \t]*)*,?[ \t]*")
_ESCAPES: Final = re.compile(r"\\(.)")
_SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
}
_TYPES: Final = frozenset(
    {"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "untyped", "unknown"}
)


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPES.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


@lru_cache(maxsize=1 << 16)  # a target repeats its label sets every scrape: read each once
def _label_pairs(text: str) -> tuple[tuple[str, str], ...] | None:
    if not _LABELS.fullmatch(text):
        return None
    return tuple((name, _unescape(value)) for name, value in _PAIR.findall(text))


def _labels(text: str | None, line: str) -> dict[str, str]:
    if not text:
        return {}
    pairs = _label_pairs(text)
    if pairs is None:
        raise ValueError(f"invalid labels in line {line[:200]!r}")
    return dict(pairs)


def _family_of(name: str, current: Metric | None, types: dict[str, str]) -> str | None:
    """The family a sample name belongs to, if it is the current one (a name with its own TYPE is not)."""
    if current is None or (name in types and name != current.name):
        return None
    if name == current.name:
        return name
    for suffix in _SUFFIXES.get(current.type, ()):
        if name == current.name + suffix:
            return current.name
    return None


def families(text: str, openmetrics: bool) -> list[Metric]:
    """The metric families of one exposition; ValueError for a line that is not valid."""
    found: list[Metric] = []
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    units: dict[str, str] = {}
    current: Metric | None = None
    for line in text.split("\n"):
        if not line or line.isspace():
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("TYPE", "HELP", "UNIT"):
                name, value = parts[2], parts[3] if len(parts) > 3 else ""
                if parts[1] == "TYPE":
                    if value not in _TYPES:
                        raise ValueError(f"invalid metric type {value!r} in line {line[:200]!r}")
                    types[name] = "unknown" if value == "untyped" else value
                elif parts[1] == "HELP":
                    helps[name] = _unescape(value)
                else:
                    units[name] = value
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None:
            raise ValueError(f"invalid metric name or sample line {line[:200]!r}")
        name, label_text, value_text, timestamp_text = match.groups()
        family = _family_of(name, current, types)
        if current is None or family is None:
            family = name
            if name not in types:  # a sample of a typed family whose samples are interleaved
                for base, kind in types.items():
                    if name in (base + s for s in _SUFFIXES.get(kind, ())):
                        family = base
                        break
            kind = types.get(family, "unknown")
            current = Metric(family, helps.get(family, ""), kind, units.get(family, ""))
            found.append(current)
        try:
            number = float(value_text)
            timestamp = None
            if timestamp_text is not None:
                timestamp = float(timestamp_text) if openmetrics else int(timestamp_text) / 1000
        except ValueError as err:
            raise ValueError(f"invalid value in line {line[:200]!r}") from err
        current.samples.append(Sample(name, _labels(label_text, line), number, timestamp))
    return found
