"""`python -m tailer --config talonflow.yaml`: the log tailer as `talonflow up` runs it."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from tailer.service import run
from talonflow.serving import load_service_config


def main(argv: list[str] | None = None) -> int:
    loaded = load_service_config("tailer", argv, __doc__)
    if isinstance(loaded, int):
        return loaded
    config, path = loaded
    if not config.log_files:
        print("tailer: log_files is empty in the config: nothing to read", file=sys.stderr)
        return 2
    stop = threading.Event()  # the tailer reads files in threads, not in an event loop

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run(config, path, stop)
    except OSError as err:  # the ops port in use
        print(f"tailer: cannot start: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
