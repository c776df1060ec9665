"""Type stubs of the native OTLP -> Arrow decoder (native/src/lib.rs)."""

import pyarrow as pa

class Decoder:
    def __init__(
        self,
        signal: str,
        schema: pa.Schema,
        promoted: list[tuple[str, list[str]]],
        resource: list[tuple[str, str]],
    ) -> None: ...
    def decode(
        self, values: list[bytes], received_ns: list[int]
    ) -> tuple[pa.RecordBatch, pa.Int32Array, list[tuple[int, str]]]: ...
