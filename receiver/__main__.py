"""`python -m receiver [--config FILE]`: run the OTLP receiver in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from receiver.app import serve
from schemas.config import ConfigError, load_config


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
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
