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

class GrpcServer:
    def __init__(
        self,
        address: str,
        max_request_bytes: int,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
    ) -> None: ...
    @property
    def port(self) -> int: ...
    def take(self, max: int) -> list[tuple[int, int, bytes, str | None]] | None: ...
    def answer(
        self, id: int, code: int, message: str, response: bytes, details: list[tuple[str, bytes]]
    ) -> bool: ...
    def stop(self, grace: float) -> None: ...

def outline(
    signal: str, body: bytes, name_key: str, instance_key: str
) -> list[tuple[int, int, bytes | None, int]]: ...
