"""What every flow module shares: `flows.<name>:flow` built on first access, and its derived-output sink."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bytewax.dataflow import Dataflow

from schemas.config import TalonflowConfig, load_config
from sinks.parquet import ParquetSink


def lazy_flow(build: Callable[[TalonflowConfig], Dataflow]) -> Callable[[str], Dataflow]:
    """A module `__getattr__` that builds `flow` from the config when bytewax asks for it, so that
    importing a flow module (tests, benchmarks) reads no config and connects to nothing."""

    def __getattr__(name: str) -> Dataflow:
        if name == "flow":
            return build(load_config())
        raise AttributeError(name)

    return __getattr__


def sequenced_sink(config: TalonflowConfig, parts: list[str]) -> ParquetSink:
    """The exactly-once Parquet sink for outputs numbered by a sequence in keyed state.

    Without recovery state a flow starts over from the earliest record, so its outputs start over
    from number 0: the files of that part are replaced, not duplicated.
    """
    ingest = config.ingest
    return ParquetSink(
        Path(config.data_dir),
        parts,
        lambda _part: 0,
        ingest.roll_bytes,
        ingest.row_group_rows,
        ingest.buffer_bytes,
    )
