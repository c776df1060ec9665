"""CPU seconds and peak RSS of a running process, from /proc: what every bench prints beside its rates."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int, waited_children: bool = False) -> float:
    """User + system CPU seconds (stat fields 14 and 15), plus those of children it has waited for
    (16 and 17) with `waited_children`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11 : 15 if waited_children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM in MB; NaN when the kernel does not report it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")
