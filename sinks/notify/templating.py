"""Alertmanager's template world over schemas/gotemplate.py: its functions, its data model and its
default templates (templates/default.tmpl and email.tmpl, Alertmanager's own text).

A config's text fields (`title: '{{ .CommonLabels.alertname }}'`) run as Alertmanager runs them:
each is a template of one set that holds default.tmpl, email.tmpl and the config's `templates:`
files, with `.` the notification's data: .Receiver, .Status, .Alerts (.Firing, .Resolved; each
with .Labels, .Annotations, .StartsAt, .EndsAt, .GeneratorURL, .Fingerprint), .GroupLabels,
.CommonLabels, .CommonAnnotations (with .SortedPairs, .Names, .Values, .Remove), .ExternalURL.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from schemas.gotemplate import GoTemplate, GoTemplateError, StringMap, html_escape

DEFAULT_FILES = (
    Path(__file__).parent / "templates" / "default.tmpl",
    Path(__file__).parent / "templates" / "email.tmpl",
)
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


class Pair:
    """A label name and value, as Alertmanager's template.Pair."""

    def __init__(self, name: str, value: str) -> None:
        self.Name, self.Value = name, value

    def __str__(self) -> str:
        return f"{{{self.Name} {self.Value}}}"


class Pairs(list[Pair]):
    def Names(self) -> list[str]:
        return [p.Name for p in self]

    def Values(self) -> list[str]:
        return [p.Value for p in self]


class KV(StringMap):
    """Alertmanager's template.KV: a label map with its methods; a missing key reads as ""."""

    def SortedPairs(self) -> Pairs:
        return Pairs(Pair(k, self[k]) for k in sorted(self))

    def Remove(self, keys: Iterable[str]) -> KV:
        drop = set(keys)
        return KV({k: v for k, v in self.items() if k not in drop})

    def Names(self) -> list[str]:
        return self.SortedPairs().Names()

    def Values(self) -> list[str]:
        return self.SortedPairs().Values()


_GO_LAYOUT = [  # Go reference-time tokens, longest first, as strftime or a callable
    ("2006", "%Y"), ("January", "%B"), ("Monday", "%A"), ("-07:00", "tz:"), ("Z07:00", "tzZ:"),
    ("-0700", "%z"), ("Jan", "%b"), ("Mon", "%a"), ("MST", "%Z"), ("01", "%m"), ("02", "%d"),
    ("15", "%H"), ("03", "%I"), ("04", "%M"), ("05", "%S"), ("06", "%y"), ("PM", "%p"),
    (".000000000", "ns"), (".000000", "us"), (".000", "ms"), ("_2", "_d"), ("1", "m"), ("2", "d"),
    ("3", "I"), ("4", "M"), ("5", "S"),
]  # fmt: skip


class GoTime:
    """A time.Time in templates: prints as Go does; .Format, .Unix, .UTC, .IsZero as in Go."""

    def __init__(self, when: datetime) -> None:
        self.when = when

    @classmethod
    def parse(cls, text: str) -> GoTime:
        if not text or text.startswith("0001-01-01"):
            return cls(ZERO_TIME)
        return cls(datetime.fromisoformat(text.replace("Z", "+00:00")))

    def __str__(self) -> str:
        zone = self.when.strftime("%Z") or "UTC"
        frac = f".{self.when.microsecond:06d}".rstrip("0") if self.when.microsecond else ""
        return self.when.strftime(f"%Y-%m-%d %H:%M:%S{frac} %z ") + zone

    def Format(self, layout: str) -> str:
        out, i = [], 0
        while i < len(layout):
            for token, code in _GO_LAYOUT:
                if layout.startswith(token, i):
                    out.append(self._token(code))
                    i += len(token)
                    break
            else:
                out.append(layout[i])
                i += 1
        return "".join(out)

    def _token(self, code: str) -> str:
        w = self.when
        micro = w.microsecond
        simple = {"ns": f".{micro:06d}000", "us": f".{micro:06d}", "ms": f".{micro // 1000:03d}",
                  "_d": f"{w.day:2d}", "m": str(w.month), "d": str(w.day), "I": str(w.hour % 12 or 12),
                  "M": str(w.minute), "S": str(w.second)}  # fmt: skip
        if code in simple:
            return simple[code]
        if code == "%Y":
            return f"{w.year:04d}"  # strftime does not pad year 1, Go's zero time
        if code in ("tz:", "tzZ:"):
            offset = w.strftime("%z") or "+0000"
            if code == "tzZ:" and offset == "+0000":
                return "Z"
            return f"{offset[:3]}:{offset[3:]}"
        return w.strftime(code)

    def Unix(self) -> int:
        return int(self.when.timestamp())

    def UTC(self) -> GoTime:
        return GoTime(self.when.astimezone(UTC))

    def IsZero(self) -> bool:
        return self.when == ZERO_TIME


def _go_replacement(template: str) -> str:
    """Go's `$1`, `${1}`, `${name}`, `$$` in regexp replacements, for Python's re.sub."""
    return re.sub(
        r"\$(\$|\{(\w+)\}|(\w+))",
        lambda m: "$" if m.group(1) == "$" else f"\\g<{m.group(2) or m.group(3)}>",
        template.replace("\\", "\\\\"),
    )


def _title(text: str) -> str:
    """Go's strings.Title: the first letter of every word upper-cased, the rest unchanged."""
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(), text)


def _time_arg(value: Any) -> datetime:
    if isinstance(value, GoTime):
        return value.when
    if isinstance(value, datetime):
        return value
    raise ValueError(f"expected a time, not {type(value).__name__}")


FUNCS: dict[str, Callable[..., Any]] = {
    "toUpper": str.upper,
    "toLower": str.lower,
    "title": _title,
    "trimSpace": str.strip,
    "join": lambda sep, items: sep.join(items),
    "match": lambda pattern, text: re.search(pattern, text) is not None,
    "safeHtml": str,
    "safeUrl": str,
    "urlUnescape": urllib.parse.unquote,
    "reReplaceAll": lambda pattern, repl, text: re.sub(pattern, _go_replacement(repl), text),
    "stringSlice": lambda *items: list(items),
    "date": lambda layout, when: GoTime(_time_arg(when)).Format(layout),
    "tz": lambda name, when: GoTime(_time_arg(when).astimezone(ZoneInfo(name))),
    "toJson": lambda value: json.dumps(value, default=str),
}


class AlertData:
    """One alert as templates see it (Alertmanager's template.Alert)."""

    def __init__(
        self,
        status: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        starts_at: str,
        ends_at: str,
        generator_url: str,
        fingerprint: str,
    ) -> None:
        self.Status, self.Labels, self.Annotations = status, KV(labels), KV(annotations)
        self.StartsAt, self.EndsAt = GoTime.parse(starts_at), GoTime.parse(ends_at)
        self.GeneratorURL, self.Fingerprint = generator_url, fingerprint


class Alerts(list[AlertData]):
    def Firing(self) -> Alerts:
        return Alerts(a for a in self if a.Status == "firing")

    def Resolved(self) -> Alerts:
        return Alerts(a for a in self if a.Status == "resolved")


class Data:
    """The notification data templates run on (Alertmanager's template.Data)."""

    def __init__(
        self,
        receiver: str,
        status: str,
        alerts: Sequence[AlertData],
        group_labels: dict[str, str],
        common_labels: dict[str, str],
        common_annotations: dict[str, str],
        external_url: str,
    ) -> None:
        self.Receiver = re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", receiver)  # Alertmanager QuoteMeta()s it
        self.Status, self.Alerts = status, Alerts(alerts)
        self.GroupLabels, self.CommonLabels = KV(group_labels), KV(common_labels)
        self.CommonAnnotations, self.ExternalURL = KV(common_annotations), external_url


@lru_cache(maxsize=1)
def _defaults() -> GoTemplate:
    sets = [GoTemplate(path.read_text(), FUNCS, name=path.name) for path in DEFAULT_FILES]
    return GoTemplate("", FUNCS, name="defaults", include=sets)


def check_template(source: str) -> None:
    """Raise GoTemplateError (a ValueError) unless `source` parses with Alertmanager's functions."""
    GoTemplate(source, FUNCS, name="template")


def check_template_files(paths: Sequence[Path]) -> None:
    """Parse every `templates:` file; the error names the file and line."""
    TemplateSet(paths)


class TemplateSet:
    """default.tmpl, email.tmpl and the config's files as one set; `render` runs a config string in it."""

    def __init__(self, files: Sequence[Path] = ()) -> None:
        library = [_defaults()]
        for path in files:
            try:
                library.append(GoTemplate(path.read_text(), FUNCS, name=path.name, include=library))
            except OSError as err:
                raise GoTemplateError(f"templates: cannot read {path}: {err.strerror}") from None
        self._library = library
        self._parsed: dict[str, GoTemplate] = {}

    def render(self, source: str, data: Any, html: bool = False) -> str:
        """Alertmanager's ExecuteTextString (or, with `html`, ExecuteHTMLString: printed values are
        HTML-escaped); raises GoTemplateError or GoTemplateExecError."""
        if not source:
            return ""
        template = self._parsed.get(source)
        if template is None:
            template = self._parsed[source] = GoTemplate(source, FUNCS, include=self._library)
        return template.render(data, escape=html_escape if html else None)
