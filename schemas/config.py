"""The `talonflow.yaml` model: one validated file for every part of the pipeline.

Values may reference the environment as the OpenTelemetry Collector does, `${env:NAME}` or
`${env:NAME:-default}`, so secrets stay out of the file. Durations read "250ms", "5s", "2m",
"7d" (or plain seconds); sizes read "4MiB", "512KiB" (or plain bytes).
"""

from __future__ import annotations

import os
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.console import ConsoleConfig
from schemas.datasets import DATASETS
from schemas.notify import NotifyConfig
from schemas.rollups import RESOLUTIONS
from schemas.scrape import ScrapeConfig, ScrapeSettings, check_unique_jobs
from schemas.tailer import LogFileSource, TailerConfig
from schemas.tls import TlsConfig
from schemas.types import Bytes, Port, Seconds
from schemas.types import Strict as _Strict

CONFIG_ENV = "TALONFLOW_CONFIG"
DEFAULT_CONFIG = "talonflow.yaml"

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config file that cannot be used; the message names the key and the problem."""


class Endpoint(_Strict):
    host: str = "127.0.0.1"
    port: Port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class TopicSettings(_Strict):
    partitions: int = Field(4, ge=1, description="divisible by the bytewax worker counts you run")
    replication_factor: int | None = Field(None, ge=1)  # default: kafka.brokers, at most 3
    min_insync_replicas: int | None = Field(None, ge=1)  # default: one fewer than the replicas, at least 1
    retention: Seconds = 7 * 86400.0


class KafkaConfig(_Strict):
    """The broker the pipeline uses; `talonflow up` runs it locally when `managed` is true."""

    bootstrap_servers: str = "127.0.0.1:9092"
    managed: bool = True
    # Managed brokers, each a KRaft broker and controller: bootstrap_servers lists one address per
    # broker, and broker i's controller listens on controller_port + i - 1.
    brokers: int = Field(1, ge=1, le=9)
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

    @property
    def replication(self) -> int:
        """Replicas of every topic: as configured, else one per broker up to Kafka's usual 3."""
        return self.topics.replication_factor or min(self.brokers, 3)

    @property
    def min_insync(self) -> int:
        """Replicas that must have a record before acks=all answers: 2 of 3 survives one broker down."""
        return self.topics.min_insync_replicas or max(1, self.replication - 1)

    @model_validator(mode="after")
    def _cluster_shape(self) -> KafkaConfig:
        addresses = self.bootstrap_servers.split(",")
        if self.managed and len(addresses) != self.brokers:
            raise ValueError(
                f"bootstrap_servers lists {len(addresses)} address(es) but brokers is {self.brokers}: "
                "a managed cluster needs one address per broker"
            )
        if self.managed and self.replication > self.brokers:
            raise ValueError(f"topics.replication_factor {self.replication} exceeds brokers {self.brokers}")
        if self.min_insync > self.replication:
            raise ValueError(
                f"topics.min_insync_replicas {self.min_insync} exceeds the replicas {self.replication}"
            )
        return self


class MinioConfig(_Strict):
    endpoint: Endpoint = Endpoint(port=9000)
    console: Endpoint = Endpoint(port=9001)
    managed: bool = True
    # Drives of a managed MinIO: more than one runs it erasure-coded (`minio server drive{1...N}`);
    # with 4 (default parity EC:2) a lost drive loses nothing and writes go on. 1: a plain server.
    drives: int = Field(1, ge=1, le=16)
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
    # produce requests in flight per broker: 1 batches what arrives during a round trip (README,
    # "Against the OpenTelemetry Collector"); a distant cluster may want more (up to 5 with idempotence)
    max_in_flight: int = Field(1, ge=1, le=5)


class ReceiverConfig(_Strict):
    grpc: Endpoint = Endpoint(port=4317)
    http: Endpoint = Endpoint(port=4318)
    ops: Endpoint = Endpoint(port=13133)
    max_request_bytes: Bytes = 4 * 1024**2
    bearer_token: SecretStr | None = None
    tls: TlsConfig | None = None
    retry_after: Seconds = 2.0  # the advised retry delay when Kafka is away: the outage's age
    retry_after_max: Seconds = 30.0  # so far, within these bounds (receiver/readiness.py)
    producer: ProducerConfig = ProducerConfig()

    @field_validator("bearer_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None  # an unset ${env:TOKEN} means "no auth", as in the Collector
        return value

    @model_validator(mode="after")
    def _retry_bounds(self) -> ReceiverConfig:
        if self.retry_after_max < self.retry_after:
            raise ValueError("retry_after_max must be at least retry_after")
        return self


class IngestConfig(_Strict):
    """flows/ingest.py: Kafka → Parquet. Files appear at each commit (bytewax snapshot)."""

    commit_interval: Seconds = Field(60.0, ge=1)  # file roll by age: rows visible at most this late
    roll_bytes: Bytes = 128 * 1024**2  # file roll by size: a partition writes early past this
    # memory bound: the rows one worker holds over all its partitions; past it the largest writes early
    buffer_bytes: Bytes = Field(16 * 1024**2, ge=1024**2)
    prefetch_bytes: Bytes = Field(2 * 1024**2, ge=64 * 1024)  # Kafka records queued per partition
    row_group_rows: int = Field(128 * 1024, ge=1024)
    workers: int = Field(1, ge=1, le=8)  # bytewax -w for `talonflow up`
    max_past: Seconds = 7 * 86400.0  # rows older than this against their Kafka time: dead letters
    max_future: Seconds = 3600.0  # rows newer than this against their Kafka time: dead letters
    poll_records: int = Field(50, ge=1)  # Kafka records per source poll: one bytewax item
    # a record with the same key and bytes as one this recent (Kafka time) on its partition is an
    # SDK's resend and is dropped (flows/resends.py); longer than an exporter's timeout with its
    # retries (README: 120 s) or a Collector's retry_on_failure (5 min); 0 keeps every record
    dedupe_window: Seconds = Field(600.0, ge=0)


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
_YEAR = TierPolicy(hot_for=7 * _DAY, warm_for=30 * _DAY, cold_for=365 * _DAY)  # rollups, alert history
_DEFAULT_POLICIES = {
    **{
        name: (_YEAR if name.startswith("rollups_") or name in ("alerts", "heartbeats") else _RAW)
        for name in DATASETS
    },
    "spans": TierPolicy(hot_for=3 * _DAY, warm_for=14 * _DAY, cold_for=30 * _DAY),
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


class Price(_Strict):
    """USD per million tokens of one model; cache reads and writes cost `input` where not priced."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cache_read: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class RollupsConfig(_Strict):
    """flows/rollups.py: otlp_metrics and otlp_spans → talon_rollups and rollups_<resolution>."""

    resolutions: tuple[str, ...] = ("1m", "1h", "1d")  # each a multiple of the one before
    allowed_lateness: Seconds = 30.0  # a window closes this long after event time passed its end
    shards: int = Field(4, ge=1)  # keyed-state partitions: at least workers x processes; each costs per poll
    commit_interval: Seconds = Field(10.0, ge=1)  # bytewax snapshots: rollup files appear this often
    sketch_scale: int = Field(6, ge=0, le=10)  # gauge quantile sketch: relative error ~ 2**(2**-s) - 1
    prices: dict[str, Price] = Field(default_factory=dict)  # over schemas/prices.yaml, by model name
    workers: int = Field(1, ge=1, le=8)
    poll_records: int = Field(500, ge=1)

    @field_validator("resolutions")
    @classmethod
    def _nested(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [r for r in value if r not in RESOLUTIONS]
        if unknown or not value:
            raise ValueError(f"unknown resolutions {unknown}; choose from {list(RESOLUTIONS)}")
        seconds = [RESOLUTIONS[r] for r in value]
        if any(b <= a or b % a for a, b in pairwise(seconds)):
            raise ValueError("each resolution must be a larger multiple of the one before")
        return value


class HeartbeatComponent(_Strict):
    """A component whose silence pages someone; `match` selects it by resource attributes."""

    match: dict[str, str]  # e.g. {service.name: main_agent}
    expected_interval: Seconds = Field(gt=0)
    grace_period: Seconds
    metric: str | None = None  # count only this metric as a beat (default: any signal)
    log_event: str | None = None  # or only log records with this event_name
    required: bool = False  # never reported: `new` (no verdict) unless required, then down like any other


class HeartbeatsConfig(_Strict):
    """flows/heartbeats.py: up → late (past the interval) → down (past interval + grace)."""

    components: dict[str, HeartbeatComponent] = Field(default_factory=dict)
    default_interval: Seconds = Field(60.0, gt=0)  # any other resource that has reported
    default_grace: Seconds = 120.0
    tick: Seconds = Field(1.0, gt=0)  # the clock: verdicts at most this late
    startup_grace: Seconds = 30.0  # after a (re)start no verdict gets worse this long: replay catches up
    shards: int = Field(8, ge=1)
    commit_interval: Seconds = Field(5.0, ge=1)
    workers: int = Field(1, ge=1, le=8)


class AlertsConfig(_Strict):
    """flows/alerts.py: Prometheus rule files (PromQL) over raw samples; events to talon_alerts, `alerts`."""

    rule_files: tuple[Path, ...] = ()  # relative to this config file; none: the alerts flow does not run
    evaluation_interval: Seconds = Field(60.0, gt=0)  # groups without `interval` (Prometheus' global one)
    allowed_lateness: Seconds = Field(1.0, ge=0)  # evaluate once samples this much newer arrived (or idle)
    external_labels: dict[str, str] = Field(default_factory=dict)  # {{ $externalLabels }} in templates
    spanmetrics_expiration: Seconds = Field(300.0, ge=0)  # a span series this quiet is forgotten; 0: never
    poll_records: int = Field(500, ge=1)
    commit_interval: Seconds = Field(5.0, ge=1)
    workers: int = Field(1, ge=1, le=8)


class TalonflowConfig(_Strict):
    state_dir: Path = Path(".talonflow")
    data_dir: Path = Path("data")
    kafka: KafkaConfig = KafkaConfig()
    minio: MinioConfig = MinioConfig()
    receiver: ReceiverConfig = ReceiverConfig()
    ingest: IngestConfig = IngestConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    rollups: RollupsConfig = RollupsConfig()
    heartbeats: HeartbeatsConfig = HeartbeatsConfig()
    alerts: AlertsConfig = AlertsConfig()
    notifications: NotifyConfig = NotifyConfig()
    log_files: list[LogFileSource] = Field(default_factory=list)  # read by tailer/
    tailer: TailerConfig = TailerConfig()
    scrape_configs: tuple[ScrapeConfig, ...] = ()  # Prometheus' format; none: no scraper runs
    scrape: ScrapeSettings = ScrapeSettings()
    console: ConsoleConfig = ConsoleConfig()

    @field_validator("scrape_configs")
    @classmethod
    def _unique_jobs(cls, value: tuple[ScrapeConfig, ...]) -> tuple[ScrapeConfig, ...]:
        return check_unique_jobs(value)


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
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid UTF-8: {err}") from err


def load_config(explicit: str | os.PathLike[str] | None = None) -> TalonflowConfig:
    """Read, expand and validate the config; relative paths are resolved against the file's folder."""
    path = config_path(explicit)
    raw = _read(path, required=bool(explicit or os.environ.get(CONFIG_ENV)))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(raw).__name__}")
    try:
        # base_dir: notifications.file and its `templates:` globs are read relative to this file
        config = TalonflowConfig.model_validate(
            _expand_env(raw, ""), context={"base_dir": path.resolve().parent}
        )
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{path}: {problems}") from err
    base = path.resolve().parent
    rule_files = tuple(base / f for f in config.alerts.rule_files)
    alerts = config.alerts.model_copy(update={"rule_files": rule_files})
    return config.model_copy(
        update={"state_dir": base / config.state_dir, "data_dir": base / config.data_dir, "alerts": alerts}
    )
