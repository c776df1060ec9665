"""The `log_files:` and `tailer:` sections of `talonflow.yaml`: which files the log tailer reads, how.

Each `log_files` entry is one source, like a filelog receiver or a promtail scrape config: globs
to include and exclude, the resource its records carry (`service.name` and friends) and the line
format. The globs should match the rotated names too (`app.log*`): a file is known by its first
bytes, not its name, so a rotated file is finished from where reading stopped.
"""

from __future__ import annotations

import re
import socket
from typing import Literal

from pydantic import Field, field_validator, model_validator

from schemas.types import Bytes, Port, Seconds, Strict


class LogFileSource(Strict):
    include: list[str] = Field(min_length=1)  # globs; relative ones are read from the config's folder
    exclude: list[str] = Field(default_factory=list)  # e.g. ["*.gz"]
    service_name: str = Field(min_length=1)
    service_instance_id: str = Field(default_factory=socket.gethostname)
    resource: dict[str, str] = Field(default_factory=dict)  # more resource attributes
    format: Literal["json", "regex"] = "json"
    regex: str | None = None  # named groups: time, level, message, trace_id, ... (as JSON keys)
    start_at: Literal["end", "beginning"] = "end"  # for files found at the very first start only

    @field_validator("include", "exclude")
    @classmethod
    def _no_blank_globs(cls, globs: list[str]) -> list[str]:
        if any(not g.strip() for g in globs):
            raise ValueError("a glob may not be empty")
        return globs

    @model_validator(mode="after")
    def _regex_fits_format(self) -> LogFileSource:
        if self.format == "json":
            if self.regex is not None:
                raise ValueError("regex: only for format: regex")
            return self
        if not self.regex:
            raise ValueError("regex: required for format: regex")
        try:
            compiled = re.compile(self.regex)
        except re.error as err:
            raise ValueError(f"regex: does not compile: {err}") from err
        if not compiled.groupindex:
            raise ValueError("regex: needs named groups, e.g. (?P<message>.*)")
        return self


class TailerConfig(Strict):
    """The tailer process; `talonflow up` runs it only when `log_files` is not empty."""

    id: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")  # one per host: its positions' key
    host: str = "127.0.0.1"  # ops port: /healthz, /metrics
    port: Port = 13140
    poll_interval: Seconds = Field(0.2, gt=0)  # an idle file is looked at this often
    batch_bytes: Bytes = 4 * 1024**2  # read per poll at most: one Kafka transaction
    max_line_bytes: Bytes = 1024**2  # a longer line is cut into records of this size, never dropped
    fingerprint_bytes: int = Field(1000, ge=16, le=65536)  # a file is known by this many first bytes
    rotate_wait: Seconds = 5.0  # a file renamed out of the globs or deleted is still read this long
    forget_after: Seconds = 300.0  # a position whose file is gone is kept this long (copies, restarts)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
