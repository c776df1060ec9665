"""`scrape_configs:` in Prometheus' own format, so a block pasted from prometheus.yml works as it is.

Only the keys talonflow implements are accepted; any other Prometheus key is an error naming it,
rather than a setting silently ignored. Defaults are Prometheus' (its global defaults: 1m
interval, 10s timeout), except `body_size_limit`, which Prometheus leaves unlimited: one
runaway target must not take the scraper's memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from schemas.types import Bytes, Port, Seconds, Strict

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RelabelAction = Literal["replace", "keep", "drop", "labeldrop", "labelkeep", "labelmap", "hashmod"]


class RelabelConfig(Strict):
    """One relabel step; the regex is anchored at both ends, as in Prometheus."""

    source_labels: tuple[str, ...] = ()
    separator: str = ";"
    regex: str = "(.*)"
    target_label: str = ""
    replacement: str = "$1"
    modulus: int = Field(0, ge=0)
    action: RelabelAction = "replace"

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"invalid regex {value!r}: {err}") from err
        return value

    @model_validator(mode="after")
    def _complete(self) -> RelabelConfig:
        if self.action in ("replace", "hashmod") and not self.target_label:
            raise ValueError(f"action {self.action} needs target_label")
        if self.action == "hashmod" and not self.modulus:
            raise ValueError("action hashmod needs a modulus > 0")
        return self


class StaticConfig(Strict):
    targets: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)


class FileSdConfig(Strict):
    """JSON or YAML files of [{targets: [...], labels: {...}}], re-read when they change."""

    files: tuple[str, ...]
    refresh_interval: Seconds = 300.0


class BasicAuth(Strict):
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None


class Authorization(Strict):
    type: str = "Bearer"
    credentials: SecretStr | None = None
    credentials_file: Path | None = None


class TlsClientConfig(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False


class ScrapeConfig(Strict):
    """One Prometheus scrape job."""

    job_name: str = Field(min_length=1)
    scrape_interval: Seconds = Field(60.0, gt=0)
    scrape_timeout: Seconds = Field(10.0, gt=0)
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    params: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    honor_labels: bool = False
    honor_timestamps: bool = True
    static_configs: tuple[StaticConfig, ...] = ()
    file_sd_configs: tuple[FileSdConfig, ...] = ()
    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    tls_config: TlsClientConfig | None = None
    relabel_configs: tuple[RelabelConfig, ...] = ()
    metric_relabel_configs: tuple[RelabelConfig, ...] = ()
    body_size_limit: Bytes = 64 * 1024**2
    sample_limit: int = Field(0, ge=0)  # 0: no limit; above it the whole scrape fails, as in Prometheus

    @model_validator(mode="after")
    def _consistent(self) -> ScrapeConfig:
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError("scrape_timeout must not exceed scrape_interval")
        if self.basic_auth and self.authorization:
            raise ValueError("at most one of basic_auth and authorization")
        return self


class ScrapeSettings(Strict):
    """How talonflow runs the scrapers: `processes` shards targets by a stable hash (hashmod)."""

    processes: int = Field(1, ge=1, le=64)
    ops_host: str = "127.0.0.1"
    ops_port: Port = 13135  # scraper i serves /metrics and /healthz on ops_port + i


def check_unique_jobs(configs: tuple[ScrapeConfig, ...]) -> tuple[ScrapeConfig, ...]:
    """Prometheus refuses two jobs with one name: their series would collide."""
    names = [c.job_name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate job_name {duplicates}")
    return configs


def valid_label_name(name: str) -> bool:
    return bool(_LABEL_NAME.match(name))
