"""The private talonflow stack a benchmark runs on: its own folder, config and ports, down at the end.

Ports are below Linux's ephemeral range (32768 on), where a client socket could take one, and
apart from the tests' 1xxxx, so a bench can run beside the test suite's stack.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from schemas.config import load_config
from talonflow.stack import Stack

KAFKA_PORT = 21092
RECEIVER = {"grpc": {"port": 21317}, "http": {"port": 21318}, "ops": {"port": 21133}}


def stack_settings(folder: Path) -> dict[str, Any]:
    """The config document every bench stack starts from: state and data under `folder`."""
    return {
        "state_dir": str(folder / "state"),
        "data_dir": str(folder / "data"),
        "kafka": {"bootstrap_servers": f"127.0.0.1:{KAFKA_PORT}", "controller_port": KAFKA_PORT + 1},
        "minio": {"endpoint": {"port": 21000}, "console": {"port": 21001}},
        "receiver": RECEIVER,
        "lifecycle": {"ops": {"port": 21134}},
    }


@contextmanager
def bench_stack(
    config_file: Path, document: dict[str, Any], stopped: Collection[str] = (), timeout: float = 180
) -> Iterator[Stack]:
    """`talonflow up --detach` on `document` (written to `config_file`), then stop the `stopped`
    processes: the bench runs that part itself, timed, or they would compete for the CPU.
    `timeout`: `up`'s wait for health, longer for a niced stack on a busy machine."""
    config_file.write_text(yaml.safe_dump(document))
    cli = [sys.executable, "-m", "talonflow.cli", "--config", str(config_file)]
    print("starting the bench stack (Kafka, MinIO, receiver, flows)", file=sys.stderr)
    try:  # `down` also when `up` is interrupted: supervisord would go on holding the ports
        subprocess.run([*cli, "up", "--detach", "--timeout", str(timeout)], check=True)
        stack = Stack(load_config(config_file), config_file)
        for program in stack.programs():  # alerts runs only with rule files
            if program.name in stopped:
                stack.rpc().supervisor.stopProcess(program.name)
        yield stack
    finally:
        subprocess.run([*cli, "down"], check=False)
