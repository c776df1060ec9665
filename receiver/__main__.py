"""`python -m receiver [--config FILE]`: run the OTLP receiver in the foreground."""

from __future__ import annotations

import sys

from receiver.app import serve
from talonflow.serving import run_service

if __name__ == "__main__":
    sys.exit(run_service("receiver", serve, description=__doc__))
