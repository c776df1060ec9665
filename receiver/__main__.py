"""`python -m receiver [--config FILE]`: run the OTLP receiver in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from receiver.app import serve
from schemas.config import ConfigError, TalonflowConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m receiver", description=__doc__)
    parser.add_argument("--config", help="config file (default: $TALONFLOW_CONFIG or ./talonflow.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"receiver: {err}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_run_until_signalled(config))
    except OSError as err:  # a port in use, a certificate that cannot be read
        print(f"receiver: cannot start: {err}", file=sys.stderr)
        return 1
    return 0


async def _run_until_signalled(config: TalonflowConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, stop)


if __name__ == "__main__":
    sys.exit(main())
