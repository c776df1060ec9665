"""`up`'s port check and the part-ownership check: /proc parsing, naming the holder, config shapes.

Real sockets on this test's range (26200-26299) where the kernel's view matters; a small
fake /proc tree where only the parsing does.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from schemas.config import ConfigError, TalonflowConfig, load_config
from talonflow.health import part_checks, part_problem
from talonflow.ports import (
    Address,
    holders,
    ownership_problem,
    parent_pid,
    parse_listeners,
    port_problems,
)
from talonflow.stack import broker_names, planned_addresses

# A /proc/net/tcp excerpt: 127.0.0.1:4317 and 0.0.0.0:9092 listening, one established connection.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:10DD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40001 1 0
   1: 00000000:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40002 1 0
   2: 0100007F:10DD 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 40003 1 0
"""
# /proc/net/tcp6: [::]:3000 and [::ffff:127.0.0.1]:13133 listening.
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 50001 1 0
   1: 0000000000000000FFFF00000100007F:334D 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 50002 1 0
"""  # noqa: E501


def test_listening_sockets_are_read_from_proc_net_tcp() -> None:
    found = {(str(listener.ip), listener.port, listener.inode) for listener in parse_listeners(TCP)}
    assert found == {("127.0.0.1", 4317, 40001), ("0.0.0.0", 9092, 40002)}  # the connection is not listed


def test_ipv6_and_ipv4_mapped_listeners() -> None:
    found = {(listener.ip, listener.port) for listener in parse_listeners(TCP6)}
    assert found == {
        (ipaddress.ip_address("::"), 3000),
        (ipaddress.ip_address("::ffff:127.0.0.1"), 13133),
    }


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    """/proc with the listeners above, pid 4242 holding 127.0.0.1:4317 and pid 77 holding [::]:3000."""
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP)
    (tmp_path / "net" / "tcp6").write_text(TCP6)
    for pid, inode, cmdline, ppid in (
        (4242, 40001, b"otelcol\0--config\0a b.yaml\0", 1),
        (77, 50001, b"", 4242),
    ):
        fd = tmp_path / str(pid) / "fd"
        fd.mkdir(parents=True)
        (fd / "0").symlink_to("/dev/null")
        (fd / "3").symlink_to(f"socket:[{inode}]")
        (tmp_path / str(pid) / "cmdline").write_bytes(cmdline)
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (odd) name) S {ppid} {pid} {pid} 0 -1\n")
    return tmp_path


def test_the_holder_is_named_with_pid_and_command_line(fake_proc: Path) -> None:
    assert holders(Address("receiver otlp/grpc", "127.0.0.1", 4317), fake_proc) == {
        4242: "otelcol --config a b.yaml"
    }
    assert holders(Address("console http", "127.0.0.1", 3000), fake_proc) == {77: "?"}  # [::] takes IPv4 too
    assert holders(Address("receiver ops", "127.0.0.1", 13133), fake_proc) == {}  # its holder is unreadable
    assert holders(Address("minio api", "127.0.0.1", 9000), fake_proc) == {}


def test_parent_pid_survives_a_command_name_with_parentheses_and_spaces(fake_proc: Path) -> None:
    assert parent_pid(77, fake_proc) == 4242
    assert parent_pid(5, fake_proc) is None


def test_a_child_of_the_supervised_process_owns_the_port_for_it(fake_proc: Path) -> None:
    console = Address("console http", "127.0.0.1", 3000)
    assert ownership_problem(console, 77, fake_proc) is None
    assert ownership_problem(console, 4242, fake_proc) is None  # 77 is a child of 4242 (a shard)
    problem = ownership_problem(Address("receiver otlp/grpc", "127.0.0.1", 4317), 99, fake_proc)
    assert (
        problem
        == "127.0.0.1:4317 (receiver otlp/grpc) is held by pid 4242: otelcol --config a b.yaml, not by pid 99"
    )
    missing = ownership_problem(Address("minio api", "127.0.0.1", 9000), 99, fake_proc)
    assert missing == "127.0.0.1:9000 (minio api): nothing listens there"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 26201)) as server:
        yield server


def test_a_taken_port_is_named_with_its_part_and_this_process(listener: socket.socket) -> None:
    problems = port_problems(
        [Address("receiver otlp/grpc", "127.0.0.1", 26201), Address("x", "127.0.0.1", 26202)]
    )
    assert len(problems) == 1
    assert problems[0].startswith("127.0.0.1:26201 (receiver otlp/grpc): in use; held by pid ")
    # the holder is named as it was started (`.venv/bin/python`), which sys.executable makes absolute
    started_as = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode()
    assert f"pid {os.getpid()}: {started_as}" in problems[0]


def test_ownership_against_the_real_kernel(listener: socket.socket) -> None:
    address = Address("lifecycle ops", "127.0.0.1", 26201)
    assert ownership_problem(address, os.getpid()) is None
    problem = ownership_problem(address, 1)
    assert problem is not None and f"held by pid {os.getpid()}" in problem


def test_two_parts_configured_on_one_port_are_refused() -> None:
    problems = port_problems(
        [Address("receiver ops", "127.0.0.1", 26203), Address("lifecycle ops", "127.0.0.1", 26203)]
    )
    assert problems[0] == "port 26203 is configured for several parts: receiver ops, lifecycle ops"


def _config(tmp_path: Path, text: str) -> TalonflowConfig:
    path = tmp_path / "talonflow.yaml"
    path.write_text(text)
    return load_config(path)


BROKERS = "127.0.0.1:26211,127.0.0.1:26212,127.0.0.1:26213"
THREE = f"kafka: {{brokers: 3, bootstrap_servers: '{BROKERS}', controller_port: 26214}}\n"


def test_a_cluster_lists_each_broker_and_replicates_three_ways(tmp_path: Path) -> None:
    config = _config(tmp_path, THREE + "minio: {drives: 4}\n")
    assert (config.kafka.replication, config.kafka.min_insync) == (3, 2)
    assert broker_names(config) == ["kafka-1", "kafka-2", "kafka-3"]
    kafka = [(a.part, a.port) for a in planned_addresses(config) if a.part.startswith("kafka")]
    assert kafka == [
        ("kafka-1 broker", 26211),
        ("kafka-1 controller", 26214),
        ("kafka-2 broker", 26212),
        ("kafka-2 controller", 26215),
        ("kafka-3 broker", 26213),
        ("kafka-3 controller", 26216),
    ]
    assert list(part_checks(config))[:4] == ["kafka-1", "kafka-2", "kafka-3", "minio"]
    single = _config(tmp_path, "")
    assert (single.kafka.replication, single.kafka.min_insync, broker_names(single)) == (1, 1, ["kafka"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka: {brokers: 3}\n", "bootstrap_servers lists 1 address(es) but brokers is 3"),
        ("kafka: {topics: {replication_factor: 2}}\n", "topics.replication_factor 2 exceeds brokers 1"),
        (
            THREE.replace("}\n", ", topics: {min_insync_replicas: 4}}\n"),
            "min_insync_replicas 4 exceeds the replicas 3",
        ),
        ("minio: {drives: 0}\n", "minio.drives: Input should be greater than or equal to 1"),
    ],
)
def test_impossible_cluster_shapes_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _config(tmp_path, text)


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


def test_a_part_is_healthy_only_while_its_own_process_holds_its_port(tmp_path: Path) -> None:
    """A stranger answering the lifecycle's /metrics passes the HTTP check but not the ownership check."""
    config = _config(tmp_path, "lifecycle: {ops: {port: 26204}}\n")
    server = ThreadingHTTPServer(("127.0.0.1", 26204), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    other = subprocess.Popen(["sleep", "60"])  # a process that is not this one nor an ancestor
    try:
        assert part_problem(config, "lifecycle", os.getpid()) is None
        problem = part_problem(config, "lifecycle", other.pid)
        assert problem is not None
        assert f"127.0.0.1:26204 (lifecycle ops) is held by pid {os.getpid()}" in problem
        assert problem.endswith(f"not by pid {other.pid}")
    finally:
        other.kill()
        other.wait()
        server.shutdown()
        server.server_close()
