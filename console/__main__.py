"""`python -m console [--config FILE]`: run the web console in the foreground."""

from __future__ import annotations

import sys

from console.server import serve
from talonflow.serving import run_service

if __name__ == "__main__":
    sys.exit(run_service("console", serve, description=__doc__))
