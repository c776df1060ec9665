"""Where an ingest flow's time goes, per stage, from py-spy's raw (collapsed) stacks.

A sample counts for the stage of its innermost frame that names one, so the Parquet write inside
a commit's flush is a write, not a commit; Arrow and the native decoder run inside the Python
frame that called them, so their time counts there too. Samples in none of the stages are the
bytewax runtime and everything else, start-up's imports apart.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# (stage, what a frame of it names: a file or function), innermost first when stacks nest
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Parquet write", ("write_atomically (",)),
    ("concat/sort", ("split_by_hour (", "concat_tables (")),
    ("decode", ("schemas/flatten.py",)),
    ("resend screening", ("flows/resends.py",)),
    ("commit", ("snapshot (",)),
    ("poll", ("flows/kafka_batches.py",)),
    ("start-up (imports)", ("<frozen importlib",)),
)
OTHER = "bytewax runtime, other"


def stage_of(stack: str) -> str:
    """The stage of one sample: `stack` is py-spy's frames, outermost first, joined by ';'."""
    for frame in reversed(stack.split(";")):
        for stage, marks in STAGES:
            if any(mark in frame for mark in marks):
                return stage
    return OTHER


def stage_samples(raw: Path) -> Counter[str]:
    """Samples per stage of one py-spy `--format raw` file (a line: stack, space, count)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[stage_of(stack)] += int(count)
    return counts


def print_stages(raw: Path, cpu_s: float) -> None:
    """Each stage's share of the samples, and that share of the flow's CPU seconds."""
    counts = stage_samples(raw)
    total = sum(counts.values())
    if not total:
        print(f"{raw.name}: no samples")
        return
    print(f"{raw.name}: {total} samples, flow CPU {cpu_s:.1f} s")
    for stage in [*(name for name, _ in STAGES), OTHER]:
        share = counts[stage] / total
        print(f"  {stage:<24}{share:>7.1%}{share * cpu_s:>8.2f} s")
