"""Health checks of the stack's parts, as `up --detach` and `status` see them."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial

from confluent_kafka.admin import AdminClient, ClusterMetadata

from schemas.config import TalonflowConfig
from schemas.topics import ALL_TOPICS
from talonflow.ports import ownership_problem
from talonflow.stack import broker_names, kafka_cluster_id, planned_addresses

# A check returns None when the part is healthy, else what is wrong.
Check = Callable[[TalonflowConfig, int | None], str | None]  # (config, supervised pid) -> problem


def _http_ok(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return None
    except urllib.error.HTTPError as err:
        return f"{url} answered {err.code}: {err.read().decode(errors='replace').strip()}"
    except OSError as err:
        return f"{url} unreachable: {getattr(err, 'reason', err)}"


def kafka_metadata(config: TalonflowConfig) -> ClusterMetadata | str:
    """The cluster's metadata (live brokers, topics, cluster id), or why no broker answered."""
    try:
        admin = AdminClient({"bootstrap.servers": config.kafka.bootstrap_servers, "log_level": 0})
        return admin.list_topics(timeout=2)
    except Exception as err:  # librdkafka raises KafkaException, or ValueError on a bad address
        return f"{config.kafka.bootstrap_servers} unreachable: {err}"


def kafka_topics(config: TalonflowConfig) -> set[str] | str:
    """The broker's topic names, or why the broker did not answer."""
    metadata = kafka_metadata(config)
    return metadata if isinstance(metadata, str) else set(metadata.topics)


def kafka_healthy(config: TalonflowConfig, _pid: int | None = None, node: int = 1) -> str | None:
    """The cluster answers with the id `up` formatted it with, lists broker `node` and has the topics."""
    metadata = kafka_metadata(config)
    if isinstance(metadata, str):
        return metadata
    ours = kafka_cluster_id(config) if config.kafka.managed else None
    if ours is not None and metadata.cluster_id != ours:
        return f"{config.kafka.bootstrap_servers} answers as cluster {metadata.cluster_id}, not ours ({ours})"
    if config.kafka.managed and node not in metadata.brokers:
        return f"broker {node} is not among the cluster's live brokers {sorted(metadata.brokers)}"
    missing = [t for t in ALL_TOPICS if t not in metadata.topics]
    return f"topics missing: {', '.join(missing)}" if missing else None


def minio_healthy(config: TalonflowConfig, _pid: int | None = None) -> str | None:
    """Alive; erasure-coded over several drives, also able to write (MinIO's write quorum)."""
    probe = "cluster" if config.minio.drives > 1 else "live"
    return _http_ok(f"http://{config.minio.endpoint.address}/minio/health/{probe}")


def receiver_healthy(config: TalonflowConfig, pid: int | None = None) -> str | None:
    """Ready, and the process answering is the one supervised: not another receiver on that port."""
    url = f"http://{config.receiver.ops.address}"
    problem = _http_ok(f"{url}/readyz")
    if problem is not None or pid is None:
        return problem
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            answered = response.read().decode().split()
    except OSError as err:
        return f"{url}/healthz unreachable: {err}"
    if answered[-1:] != [str(pid)]:
        return f"{url} is served by another process, not pid {pid}"
    return None


def supervised_only(_config: TalonflowConfig, _pid: int | None = None) -> str | None:
    """Flows have no port: their health is their supervised process staying RUNNING."""
    return None


def lifecycle_healthy(config: TalonflowConfig, _pid: int | None = None) -> str | None:
    return _http_ok(f"http://{config.lifecycle.ops.address}/metrics")


def tailer_healthy(config: TalonflowConfig, _pid: int | None = None) -> str | None:
    """No log_files: no tailer runs, nothing to check. Else its loop polled recently."""
    if not config.log_files:
        return None
    return _http_ok(f"http://{config.tailer.address}/healthz")


def console_healthy(config: TalonflowConfig, pid: int | None = None) -> str | None:
    """/healthz answers `ok <pid>`; with TLS the console's own certificate is the trust anchor."""
    console = config.console
    url = f"{console.url}/healthz"
    context = None
    if console.tls is not None:
        context = ssl.create_default_context(cafile=str(console.tls.cert_file))
        context.check_hostname = False  # a self-signed certificate need not name 127.0.0.1
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            answered = response.read().decode().split()
    except OSError as err:
        return f"{url} unreachable: {getattr(err, 'reason', err)}"
    if pid is not None and answered[-1:] != [str(pid)]:
        return f"{url} is served by another process, not pid {pid}"
    return None


def scraper_healthy(config: TalonflowConfig, _pid: int | None = None) -> str | None:
    """Every scraper shard answers on its ops port; with no scrape_configs none runs."""
    settings = config.scrape
    for shard in range(settings.processes if config.scrape_configs else 0):
        problem = _http_ok(f"http://{settings.ops_host}:{settings.ops_port + shard}/healthz")
        if problem is not None:
            return problem
    return None


CHECKS: dict[str, Check] = {
    "kafka": kafka_healthy,
    "minio": minio_healthy,
    "receiver": receiver_healthy,
    "ingest": supervised_only,
    "rollups": supervised_only,
    "alerts": supervised_only,
    "heartbeats": supervised_only,
    "lifecycle": lifecycle_healthy,
    "scraper": scraper_healthy,
    "console": console_healthy,
    "tailer": tailer_healthy,
}


def part_checks(config: TalonflowConfig) -> dict[str, Check]:
    """CHECKS with one entry per managed Kafka node (`kafka-1` … `kafka-N`) when there are several."""
    names = broker_names(config) if config.kafka.managed else ["kafka"]
    brokers: dict[str, Check] = {name: partial(kafka_healthy, node=n) for n, name in enumerate(names, 1)}
    return {**brokers, **{name: check for name, check in CHECKS.items() if name != "kafka"}}


def part_problem(config: TalonflowConfig, name: str, pid: int | None) -> str | None:
    """The part's own check, then: every address it binds is held by its supervised process, so a
    stranger on our port (another stack, say) never passes for one of our parts."""
    problem = part_checks(config)[name](config, pid)
    if problem is not None or pid is None:
        return problem
    for address in planned_addresses(config):
        if address.program == name:
            problem = ownership_problem(address, pid)
            if problem is not None:
                return problem
    return None
