"""The `console:` section of `talonflow.yaml`: where the web console listens and who may read it."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from schemas.tls import TlsConfig
from schemas.types import Bytes, BytesOrOff, Port, Seconds, Strict


class BasicAuth(Strict):
    username: str = Field(min_length=1)
    password: SecretStr


class ConsoleConfig(Strict):
    """Pages, the Prometheus HTTP API and the Alertmanager API v2 subset share this one port."""

    host: str = "127.0.0.1"
    port: Port = 3000
    bearer_token: SecretStr | None = None
    basic_auth: BasicAuth | None = None
    tls: TlsConfig | None = None
    # console/warmer.py: trace indexes, partial aggregates and series catalogues built as files land
    index_cache: Bytes = 256 * 1024**2  # trace index entries kept in memory (LRU); the rest on disk
    # Per-file frames kept in memory (LRU, by Polars' estimate of their bytes; RSS takes more: README
    # "Soak"); the rest on disk
    partial_cache: Bytes = 32 * 1024**2  # partial aggregates (console/partials.py)
    catalogue_cache: Bytes = 32 * 1024**2  # series catalogues (console/series_catalogue.py)
    results_cache: BytesOrOff = 16 * 1024**2  # query_range's past hours (console/query_results.py); 0: off
    # Hours whose reach ends this recent are evaluated at every request, never kept: ingest commits
    # every few seconds and OTel SDKs export every minute (Cortex's -frontend.max-cache-freshness)
    results_freshness: Seconds = 300.0
    warm_interval: Seconds = 10.0  # how often new and compacted files are looked for; 0: only on requests
    warm_lookback: Seconds = 7 * 86400.0  # files this recent are built ahead (the trace page's default range)
    disk_cache: Bytes = 4 * 1024**3  # caches under state_dir (indexes, partials, catalogues); LRU beyond
    query_timeout: Seconds = Field(120.0, gt=0)  # a PromQL query stops here (Prometheus' --query.timeout)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @field_validator("bearer_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None  # an unset ${env:TOKEN} means "no auth", as for the receiver
        return value

    @model_validator(mode="after")
    def _one_scheme(self) -> ConsoleConfig:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("set bearer_token or basic_auth, not both")
        return self
