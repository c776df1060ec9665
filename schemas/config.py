"""The `talonflow.yaml` model: one validated file for every part of the pipeline.

Values may reference the environment as the OpenTelemetry Collector does, `${env:NAME}` or
`${env:NAME:-default}`, so secrets stay out of the file. Durations read "250ms", "5s", "2m",
"7d" (or plain seconds); sizes read "4MiB", "512KiB" (or plain bytes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_ENV = "TALONFLOW_CONFIG"
DEFAULT_CONFIG = "talonflow.yaml"

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kib": 1024,
    "kb": 1000,
    "mib": 1024**2,
    "mb": 1000**2,
    "gib": 1024**3,
    "gb": 1000**3,
}
_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config file that cannot be used; the message names the key and the problem."""


def _parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '5s', '2m' or '7d'")
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", str(value))
    if not match:
        raise ValueError(f"invalid duration {value!r}: expected a number with a unit (ms, s, m, h, d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size such as '4MiB'")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B|B)?\s*", str(value), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"invalid size {value!r}: expected bytes or a number with B, KiB, MiB or GiB")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]


Seconds = Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)]
Bytes = Annotated[int, BeforeValidator(_parse_size), Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Strict):
    host: str = "127.0.0.1"
    port: Port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class TopicSettings(_Strict):
    partitions: int = Field(4, ge=1, description="divisible by the bytewax worker counts you run")
    replication_factor: int = Field(1, ge=1)
    retention: Seconds = 7 * 86400.0


class KafkaConfig(_Strict):
    """The broker the pipeline uses; `talonflow up` runs it locally when `managed` is true."""

    bootstrap_servers: str = "127.0.0.1:9092"
    managed: bool = True
    controller_port: Port = 9093
    heap: str = Field("1g", pattern=r"^\d+[mg]$")
    # The topics' record limit. A request larger than this is split by resource, then by scope
    # (an existing cluster may keep Kafka's 1 MiB default); managed topics are created with it.
    max_message_bytes: Bytes = 8 * 1024**2
    topics: TopicSettings = TopicSettings()

    @property
    def record_limit_bytes(self) -> int:
        """Broker, topic and producer limit: a full payload plus Kafka's record batch overhead."""
        return self.max_message_bytes + 64 * 1024


class MinioConfig(_Strict):
    endpoint: Endpoint = Endpoint(port=9000)
    console: Endpoint = Endpoint(port=9001)
    managed: bool = True
    access_key: SecretStr = SecretStr("talonflow")
    secret_key: SecretStr = SecretStr("talonflow-secret")
    bucket: str = Field("talonflow", pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")


class ProducerConfig(_Strict):
    """How the receiver talks to Kafka. `client` exists so both libraries can be measured in place."""

    client: str = Field("confluent-kafka", pattern=r"^(confluent-kafka|kafka-python)$")
    linger: Seconds = 0.005
    compression: str = Field("lz4", pattern=r"^(none|gzip|snappy|lz4|zstd)$")
    delivery_timeout: Seconds = 5.0
    buffer_bytes: Bytes = 256 * 1024**2


class TlsConfig(_Strict):
    cert_file: Path
    key_file: Path

    @model_validator(mode="after")
    def _files_exist(self) -> TlsConfig:
        for name in ("cert_file", "key_file"):
            if not getattr(self, name).is_file():
                raise ValueError(f"{name}: no such file: {getattr(self, name)}")
        return self


class ReceiverConfig(_Strict):
    grpc: Endpoint = Endpoint(port=4317)
    http: Endpoint = Endpoint(port=4318)
    ops: Endpoint = Endpoint(port=13133)
    max_request_bytes: Bytes = 4 * 1024**2
    bearer_token: SecretStr | None = None
    tls: TlsConfig | None = None
    retry_after: Seconds = 2.0
    producer: ProducerConfig = ProducerConfig()

    @field_validator("bearer_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None  # an unset ${env:TOKEN} means "no auth", as in the Collector
        return value


class IngestConfig(_Strict):
    """flows/ingest.py: Kafka → Parquet. Files appear at each commit (bytewax snapshot)."""

    commit_interval: Seconds = Field(60.0, ge=1)  # file roll by age: rows visible at most this late
    roll_bytes: Bytes = 128 * 1024**2  # file roll by size: a partition writes early past this
    row_group_rows: int = Field(128 * 1024, ge=1024)
    workers: int = Field(1, ge=1)  # bytewax -w for `talonflow up`
    max_past: Seconds = 7 * 86400.0  # rows older than this against their Kafka time: dead letters
    max_future: Seconds = 3600.0  # rows newer than this against their Kafka time: dead letters
    poll_records: int = Field(500, ge=1)  # Kafka records per source poll: one bytewax item


class TierPolicy(_Strict):
    """Ages (since a partition's hour closed) at which it leaves each tier; the retention matrix."""

    hot_for: Seconds  # then compacted into MinIO (warm)
    warm_for: Seconds  # then recompacted, stronger compression (cold)
    cold_for: Seconds  # then gone

    @model_validator(mode="after")
    def _ordered(self) -> TierPolicy:
        if not self.hot_for <= self.warm_for <= self.cold_for:
            raise ValueError("ages must satisfy hot_for <= warm_for <= cold_for")
        return self


_DAY = 86400.0
_RAW = TierPolicy(hot_for=7 * _DAY, warm_for=30 * _DAY, cold_for=90 * _DAY)
_DEFAULT_POLICIES = {
    "spans": TierPolicy(hot_for=3 * _DAY, warm_for=14 * _DAY, cold_for=30 * _DAY),
    "metrics": _RAW,
    "logs": _RAW,
    "dead_letters": _RAW,
}


class LifecycleConfig(_Strict):
    """sinks/lifecycle.py: hot (local) → warm (MinIO) → cold (MinIO, recompacted) → expired."""

    interval: Seconds = Field(60.0, gt=0)  # between passes
    grace: Seconds = 300.0  # superseded copies outlive a move this long, for queries already reading
    ops: Endpoint = Endpoint(port=13134)  # /healthz and /metrics of the service
    policies: dict[str, TierPolicy] = Field(default_factory=lambda: dict(_DEFAULT_POLICIES))

    @field_validator("policies", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        """A file names only the datasets it changes; the others keep the retention matrix."""
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - set(_DEFAULT_POLICIES))
        if unknown:
            raise ValueError(f"unknown datasets {unknown}; known: {sorted(_DEFAULT_POLICIES)}")
        return {**_DEFAULT_POLICIES, **value}


class TalonflowConfig(_Strict):
    state_dir: Path = Path(".talonflow")
    data_dir: Path = Path("data")
    kafka: KafkaConfig = KafkaConfig()
    minio: MinioConfig = MinioConfig()
    receiver: ReceiverConfig = ReceiverConfig()
    ingest: IngestConfig = IngestConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()


def _expand_env(node: Any, where: str) -> Any:
    if isinstance(node, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name, default)
        if value is None:
            raise ConfigError(f"{where}: environment variable {name} is not set and has no default")
        return value

    return _ENV_REF.sub(substitute, node)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The file to read: an explicit path, else $TALONFLOW_CONFIG, else ./talonflow.yaml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _read(path: Path, required: bool) -> Any:
    if not path.exists() and not required:
        return {}  # no ./talonflow.yaml: every default applies
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err


def load_config(explicit: str | os.PathLike[str] | None = None) -> TalonflowConfig:
    """Read, expand and validate the config; relative paths are resolved against the file's folder."""
    path = config_path(explicit)
    raw = _read(path, required=bool(explicit or os.environ.get(CONFIG_ENV)))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(raw).__name__}")
    try:
        config = TalonflowConfig.model_validate(_expand_env(raw, ""))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{path}: {problems}") from err
    base = path.resolve().parent
    return config.model_copy(
        update={"state_dir": base / config.state_dir, "data_dir": base / config.data_dir}
    )
