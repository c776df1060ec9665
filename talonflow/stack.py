"""The local pipeline as supervisord programs: Kafka (KRaft), MinIO and the receiver.

supervisord does the process work (start order, restarts, log files, stopping process groups);
this module only writes its config from `talonflow.yaml` and talks to it over XML-RPC.
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

from schemas.config import TalonflowConfig

REPO = Path(__file__).resolve().parents[1]
NATIVE = REPO / "compose" / "native"
FLOWS = (
    "ingest",
    "rollups",
    "alerts",
    "heartbeats",
)  # bytewax dataflows under flows/, each with its recovery store


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
            programs.append(Program("kafka", self._kafka_command(), self.logs / "kafka.log", 10))
        if self.config.minio.managed:
            programs.append(Program("minio", self._minio_command(), self.logs / "minio.log", 10))
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
        environment = (("TALONFLOW_CONFIG", str(self.config_file)),)
        return Program(name, command, self.logs / f"{name}.log", 40, environment)

    @property
    def kafka_dir(self) -> Path:
        return self.state / "kafka"

    def _kafka_command(self) -> list[str]:
        libs = kafka_libs()
        if not libs.is_dir():
            raise StackError(f"Kafka is not installed in {libs}: run `make setup`")
        heap = self.config.kafka.heap
        return [
            "java",
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={NATIVE / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(self.kafka_dir / "server.properties"),
        ]

    def _minio_command(self) -> list[str]:
        binary = minio_binary()
        if not binary.is_file():
            raise StackError(f"MinIO is not installed at {binary}: run `make setup`")
        minio = self.config.minio
        data = self.state / "minio"
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
            self._write_kafka_properties()
            self._format_kafka_storage()
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

    def _write_kafka_properties(self) -> None:
        kafka = self.config.kafka
        host, _, port = kafka.bootstrap_servers.split(",")[0].rpartition(":")
        controller = f"{host}:{kafka.controller_port}"
        limit = kafka.record_limit_bytes
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{controller}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.kafka_dir / "data"),
            "auto.create.topics.enable": "false",
            "num.partitions": str(kafka.topics.partitions),
            "message.max.bytes": str(limit),
            "replica.fetch.max.bytes": str(limit),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k}={v}\n" for k, v in properties.items())
        (self.kafka_dir / "server.properties").write_text(text)

    def _format_kafka_storage(self) -> None:
        if (self.kafka_dir / "data" / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        command = [
            *self._kafka_command()[:-2],  # the JVM and classpath, without the broker main class
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # one token: a base64 id may start with "-"
            "-c",
            str(self.kafka_dir / "server.properties"),
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
                "stopsignal=TERM\nstopwaitsecs=30\nstopasgroup=true\nkillasgroup=true",
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
