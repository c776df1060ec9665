"""The local pipeline as supervisord programs: Kafka (KRaft), MinIO and the receiver.

supervisord does the process work (start order, restarts, log files, stopping process groups);
this module only writes its config from `talonflow.yaml` and talks to it over XML-RPC, and lists
the addresses each part binds so that `up` can check them first.

`kafka.brokers: 3` runs three KRaft nodes, each broker and controller at once (combined mode):
three JVMs instead of six on a small machine, and a quorum of three voters survives one node
down just as three brokers do, so kill -9 of one node costs neither the metadata quorum nor
acknowledged records (replication 3, min.insync.replicas 2).
"""

from __future__ import annotations

import base64
import math
import os
import shlex
import subprocess
import sys
import uuid
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytewax.recovery import init_db_dir
from supervisor.xmlrpc import SupervisorTransport

from flows.clock_watch import SUPERVISED_ENV
from schemas.config import TalonflowConfig
from talonflow.ports import Address

REPO = Path(__file__).resolve().parents[1]
NATIVE = REPO / "compose" / "native"
FLOWS = (
    "ingest",
    "rollups",
    "alerts",
    "heartbeats",
)  # bytewax dataflows under flows/, each with its recovery store
PRETOUCH = "-XX:+AlwaysPreTouch"  # a broker's JVM flags (see _kafka_command; compose's KAFKA_OPTS)
NIO_BUFFER_CAP = "-Djdk.nio.maxCachedBufferSize=262144"


class StackError(Exception):
    """The local stack cannot be set up or reached; the message says what to do."""


@dataclass(frozen=True)
class Program:
    """One supervised process: its command line, its log file and its start priority."""

    name: str
    command: list[str]
    log: Path
    priority: int
    environment: tuple[tuple[str, str], ...] = ()  # never secrets: those come from the environment
    stop_wait: int = 30  # seconds between SIGTERM and SIGKILL


def pinned_versions() -> dict[str, str]:
    """The service versions compose/native/versions.env pins (the compose images follow them)."""
    lines = (NATIVE / "versions.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("TALONFLOW_CACHE") or Path(xdg) / "talonflow")


def kafka_libs() -> Path:
    return cache_dir() / f"kafka-{pinned_versions()['KAFKA_VERSION']}" / "libs"


def minio_binary() -> Path:
    return cache_dir() / f"minio-{pinned_versions()['MINIO_VERSION']}" / "minio"


def broker_names(config: TalonflowConfig) -> list[str]:
    """The supervised Kafka programs: `kafka` alone, or `kafka-1` … `kafka-N` for a cluster."""
    count = config.kafka.brokers
    return ["kafka"] if count == 1 else [f"kafka-{node}" for node in range(1, count + 1)]


def kafka_node_dir(config: TalonflowConfig, node: int) -> Path:
    """A node's properties and log dirs; a single broker keeps the layout it always had."""
    base = config.state_dir / "kafka"
    return base if config.kafka.brokers == 1 else base / f"node-{node}"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host, int(port)


def broker_listeners(config: TalonflowConfig) -> list[tuple[str, int, int]]:
    """(host, broker port, controller port) of each managed node, node 1 first."""
    kafka = config.kafka
    listed = [_host_port(a) for a in kafka.bootstrap_servers.split(",")]
    return [(host, port, kafka.controller_port + i) for i, (host, port) in enumerate(listed)]


def kafka_cluster_id(config: TalonflowConfig) -> str | None:
    """The id `up` formatted the managed nodes with: a broker reporting another is someone else's."""
    for node in range(1, config.kafka.brokers + 1):
        meta = kafka_node_dir(config, node) / "data" / "meta.properties"
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
    return None


def planned_addresses(config: TalonflowConfig) -> list[Address]:
    """Every address the parts `up` runs with this config will bind, named by part and role."""
    addresses: list[Address] = []
    if config.kafka.managed:
        nodes = zip(broker_names(config), broker_listeners(config), strict=True)
        for name, (host, port, controller) in nodes:
            addresses += [
                Address(f"{name} broker", host, port),
                Address(f"{name} controller", host, controller),
            ]
    minio = config.minio
    if minio.managed:
        addresses += [
            Address("minio api", minio.endpoint.host, minio.endpoint.port),
            Address("minio console", minio.console.host, minio.console.port),
        ]
    receiver = config.receiver
    addresses += [
        Address("receiver otlp/grpc", receiver.grpc.host, receiver.grpc.port),
        Address("receiver otlp/http", receiver.http.host, receiver.http.port),
        Address("receiver ops", receiver.ops.host, receiver.ops.port),
        Address("lifecycle ops", config.lifecycle.ops.host, config.lifecycle.ops.port),
        Address("console http", config.console.host, config.console.port),
    ]
    scrape = config.scrape
    for shard in range(scrape.processes if config.scrape_configs else 0):
        addresses.append(Address(f"scraper ops (shard {shard})", scrape.ops_host, scrape.ops_port + shard))
    if config.log_files:
        addresses.append(Address("tailer ops", config.tailer.host, config.tailer.port))
    return addresses


class Stack:
    """Paths and programs of one local stack, all under the config's `state_dir`."""

    def __init__(self, config: TalonflowConfig, config_file: Path) -> None:
        self.config = config
        self.config_file = config_file.resolve()
        self.state = config.state_dir
        self.logs = self.state / "logs"
        self.socket = self.state / "supervisor.sock"
        self.pidfile = self.state / "supervisord.pid"
        self.conf = self.state / "supervisord.conf"

    # -- programs -----------------------------------------------------------------------------
    def programs(self) -> list[Program]:
        programs = []
        if self.config.kafka.managed:
            # When a whole cluster stops, the last node cannot finish a controlled shutdown without a
            # quorum and would wait out stopwaitsecs; a kill then costs only log recovery at start.
            stop_wait = 30 if self.config.kafka.brokers == 1 else 15
            for node, name in enumerate(broker_names(self.config), start=1):
                command = self._kafka_command(node)
                programs.append(Program(name, command, self.logs / f"{name}.log", 10, stop_wait=stop_wait))
        if self.config.minio.managed:
            # MinIO refuses erasure-coded drives on the root filesystem (it expects real disks); these
            # drives are folders on one disk, and a 1-byte threshold makes no drive count as root.
            local = (("MINIO_ROOTDRIVE_THRESHOLD_SIZE", "1"),) if self.config.minio.drives > 1 else ()
            programs.append(Program("minio", self._minio_command(), self.logs / "minio.log", 10, local))
        receiver = [sys.executable, "-m", "receiver", "--config", str(self.config_file)]
        programs.append(Program("receiver", receiver, self.logs / "receiver.log", 30))
        programs.append(self._flow("ingest", self.config.ingest.workers, self.config.ingest.commit_interval))
        rollups = self.config.rollups
        programs.append(self._flow("rollups", rollups.workers, rollups.commit_interval))
        alerts = self.config.alerts
        if alerts.rule_files:
            programs.append(self._flow("alerts", alerts.workers, alerts.commit_interval))
        heartbeats = self.config.heartbeats
        programs.append(self._flow("heartbeats", heartbeats.workers, heartbeats.commit_interval))
        if self.config.scrape_configs:
            scraper = [sys.executable, "-m", "scrape", "--config", str(self.config_file)]
            programs.append(Program("scraper", scraper, self.logs / "scraper.log", 45))
        if self.config.log_files:  # the log tailer (tailer/): only when there are files to read
            tailer = [sys.executable, "-m", "tailer", "--config", str(self.config_file)]
            programs.append(Program("tailer", tailer, self.logs / "tailer.log", 35))
        lifecycle = [
            sys.executable,
            "-m",
            "talonflow.cli",
            "--config",
            str(self.config_file),
            "lifecycle",
            "run",
        ]
        programs.append(Program("lifecycle", lifecycle, self.logs / "lifecycle.log", 50))
        console = [sys.executable, "-m", "console", "--config", str(self.config_file)]
        programs.append(Program("console", console, self.logs / "console.log", 60))
        return programs

    def recovery_dir(self, flow: str) -> Path:
        return self.state / "recovery" / flow

    def _flow(self, name: str, workers: int, commit_interval: float) -> Program:
        """A bytewax dataflow with recovery on: snapshots every commit interval, none kept for backup."""
        command = [
            sys.executable, "-m", "bytewax.run", f"flows.{name}:flow",
            "-r", str(self.recovery_dir(name)),
            "-s", str(max(1, math.ceil(commit_interval))),
            "-b", "0",
            "-w", str(workers),
        ]  # fmt: skip
        environment = (("TALONFLOW_CONFIG", str(self.config_file)), (SUPERVISED_ENV, "1"))
        return Program(name, command, self.logs / f"{name}.log", 40, environment)

    def _kafka_command(self, node: int) -> list[str]:
        libs = kafka_libs()
        if not libs.is_dir():
            raise StackError(f"Kafka is not installed in {libs}: run `make setup`")
        heap = self.config.kafka.heap
        return [
            "java",
            f"-Xms{heap}",
            f"-Xmx{heap}",
            # Touch the whole fixed heap at start: RSS is then flat from the first minute instead of
            # rising region by region for hours (issue 12's soak), at the price of the heap in RSS
            # at once and a few seconds of start-up (README, "Soak").
            PRETOUCH,
            # The JDK copies a heap buffer written to (or read from) a socket or file through a
            # temporary direct buffer of its size, kept per thread and never freed by default: with
            # 8 MiB records the request and network threads held hundreds of MB of malloc'd memory
            # (README, "Soak"). Larger copies are freed after use.
            NIO_BUFFER_CAP,
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={NATIVE / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(kafka_node_dir(self.config, node) / "server.properties"),
        ]

    def _minio_command(self) -> list[str]:
        binary = minio_binary()
        if not binary.is_file():
            raise StackError(f"MinIO is not installed at {binary}: run `make setup`")
        minio = self.config.minio
        data = self.state / "minio"
        if minio.drives > 1:  # MinIO expands the ellipsis itself: one erasure set over the drives
            data = data / f"drive{{1...{minio.drives}}}"
        return [
            str(binary),
            "server",
            str(data),
            "--address",
            minio.endpoint.address,
            "--console-address",
            minio.console.address,
            "--quiet",
        ]

    def service_environment(self) -> dict[str, str]:
        """Secrets reach the services through supervisord's inherited environment, not files."""
        minio = self.config.minio
        return {
            **os.environ,
            "MINIO_ROOT_USER": minio.access_key.get_secret_value(),
            "MINIO_ROOT_PASSWORD": minio.secret_key.get_secret_value(),
            "MINIO_UPDATE": "off",
            "PYTHONUNBUFFERED": "1",
        }

    # -- files --------------------------------------------------------------------------------
    def write_files(self) -> None:
        """Write supervisord.conf and Kafka's server.properties; format Kafka's storage once."""
        for folder in (self.state, self.logs, self.state / "minio"):
            folder.mkdir(parents=True, exist_ok=True)
        programs = self.programs()
        if self.config.kafka.managed:
            cluster_id = kafka_cluster_id(self.config) or _new_cluster_id()
            for node in range(1, self.config.kafka.brokers + 1):
                self._write_kafka_properties(node)
                self._format_kafka_storage(node, cluster_id)
        for flow in FLOWS:
            self._init_recovery(flow)
        self.conf.write_text(self._supervisord_conf(programs))

    def _init_recovery(self, flow: str) -> None:
        """Create the flow's recovery partitions once; enough for any worker count up to 8."""
        folder = self.recovery_dir(flow)
        if folder.is_dir():
            return
        folder.mkdir(parents=True)
        init_db_dir(folder, 8)  # bytewax needs partitions >= workers: -w up to 8

    def _write_kafka_properties(self, node: int) -> None:
        kafka = self.config.kafka
        nodes = broker_listeners(self.config)
        host, port, controller = nodes[node - 1]
        voters = ",".join(f"{i}@{h}:{c}" for i, (h, _, c) in enumerate(nodes, start=1))
        limit = kafka.record_limit_bytes
        replicas, min_insync = str(kafka.replication), str(kafka.min_insync)
        folder = kafka_node_dir(self.config, node)
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(node),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(folder / "data"),
            "auto.create.topics.enable": "false",
            "num.partitions": str(kafka.topics.partitions),
            "message.max.bytes": str(limit),
            "replica.fetch.max.bytes": str(limit),
            "default.replication.factor": replicas,
            "min.insync.replicas": min_insync,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_insync,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_insync,
            "group.initial.rebalance.delay.ms": "0",
        }
        folder.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k}={v}\n" for k, v in properties.items())
        (folder / "server.properties").write_text(text)

    def _format_kafka_storage(self, node: int, cluster_id: str) -> None:
        folder = kafka_node_dir(self.config, node)
        if (folder / "data" / "meta.properties").exists():
            return
        command = [
            # the JVM and classpath, without the broker main class nor the broker's heap pretouch
            *[arg for arg in self._kafka_command(node)[:-2] if arg != PRETOUCH],
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # one token: a base64 id may start with "-"
            "-c",
            str(folder / "server.properties"),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def _supervisord_conf(self, programs: list[Program]) -> str:
        def esc(value: object) -> str:  # supervisord interpolates %(name)s in values
            return str(value).replace("%", "%%")

        sections = [
            f"[unix_http_server]\nfile={esc(self.socket)}\nchmod=0700\n",
            f"[supervisord]\nlogfile={esc(self.logs / 'supervisord.log')}\npidfile={esc(self.pidfile)}\n"
            f"childlogdir={esc(self.logs)}\nsilent=true\n",
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
            f"[supervisorctl]\nserverurl=unix://{esc(self.socket)}\n",
        ]
        for program in programs:
            lines = [
                f"[program:{program.name}]",
                f"command={esc(shlex.join(program.command))}",
                f"directory={esc(self.state)}",
                f"priority={program.priority}",
                "autostart=true\nautorestart=true\nstartsecs=2\nstartretries=5",
                f"stopsignal=TERM\nstopwaitsecs={program.stop_wait}\nstopasgroup=true\nkillasgroup=true",
                "redirect_stderr=true",
                f"stdout_logfile={esc(program.log)}",
                "stdout_logfile_maxbytes=50MB\nstdout_logfile_backups=3",
            ]
            if program.environment:
                lines.append("environment=" + ",".join(f'{k}="{esc(v)}"' for k, v in program.environment))
            sections.append("\n".join(lines) + "\n")
        return "\n".join(sections)

    # -- control ------------------------------------------------------------------------------
    def rpc(self) -> Any:
        transport = SupervisorTransport(None, None, serverurl=f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def running(self) -> bool:
        """True when a supervisord for this state dir answers on its socket."""
        if not self.socket.exists():
            return False
        try:
            return self.rpc().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Fault):
            return False

    def start_supervisord(self, foreground: bool) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)]
        if foreground:
            command.append("-n")
        return subprocess.Popen(command, env=self.service_environment())

    def process_info(self) -> list[dict[str, Any]]:
        return self.rpc().supervisor.getAllProcessInfo()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return f"(no log at {path})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _new_cluster_id() -> str:
    """Kafka's cluster id format: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
