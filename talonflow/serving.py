"""`python -m <part>` for the stack's servers: read the config, serve until SIGTERM or SIGINT.

Exit codes as the CLI's: 2 for a config that cannot be used, 1 when the server cannot start
(a port in use, a certificate that cannot be read).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from schemas.config import ConfigError, TalonflowConfig, config_path, load_config

Serve = Callable[[TalonflowConfig, asyncio.Event], Awaitable[None]]  # returns once the event is set


def load_service_config(
    name: str, argv: list[str] | None, description: str | None
) -> tuple[TalonflowConfig, Path] | int:
    """Parse `--config`, set up logging and read the config: the config and its path, or exit code 2
    (the reason said on stderr), so that every part starts and fails alike."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}", description=description)
    parser.add_argument("--config", help="config file (default: $TALONFLOW_CONFIG or ./talonflow.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return load_config(args.config), config_path(args.config)
    except ConfigError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 2


def run_service(
    name: str, serve: Serve, argv: list[str] | None = None, description: str | None = None
) -> int:
    loaded = load_service_config(name, argv, description)
    return loaded if isinstance(loaded, int) else serve_config(name, serve, loaded[0])


def serve_config(name: str, serve: Serve, config: TalonflowConfig) -> int:
    """Serve with a config already read, until SIGTERM or SIGINT; 1 when the server cannot start."""
    try:
        asyncio.run(_until_signalled(serve, config))
    except OSError as err:
        print(f"{name}: cannot start: {err}", file=sys.stderr)
        return 1
    return 0


async def _until_signalled(serve: Serve, config: TalonflowConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, stop)
