"""`python -m tailer --config talonflow.yaml`: the log tailer as `talonflow up` runs it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from schemas.config import ConfigError, config_path, load_config
from tailer.service import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tailer", description=__doc__)
    parser.add_argument("--config", help="talonflow.yaml (default: $TALONFLOW_CONFIG or ./talonflow.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"tailer: {err}", file=sys.stderr)
        return 2
    if not config.log_files:
        print("tailer: log_files is empty in the config: nothing to read", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run(config, config_path(args.config), stop)
    except OSError as err:  # the ops port in use
        print(f"tailer: cannot start: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
