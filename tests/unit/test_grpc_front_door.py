"""The native OTLP/gRPC front door with a real gRPC client: framing, limits, trailers, many calls
in flight, graceful stop. Python answers the calls here by hand; the stack tests
(test_receiver_*.py) run it with the Forwarder and Kafka."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from talonflow_native import GrpcServer

from receiver import outcome
from receiver.grpc_server import error_details

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
LIMIT = 64 * 1024

Call = tuple[int, int, bytes, str | None]


class FrontDoor:
    """The native server with its calls collected in a queue, for the test to answer."""

    def __init__(self) -> None:
        self.server = GrpcServer("127.0.0.1:0", LIMIT)
        self.calls: queue.Queue[Call] = queue.Queue()
        self._taker = threading.Thread(target=self._take)
        self._taker.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")

    def _take(self) -> None:
        while (calls := self.server.take(64)) is not None:
            for call in calls:
                self.calls.put(call)

    def next_call(self) -> Call:
        return self.calls.get(timeout=5)

    def ok(self, call_id: int, response: bytes) -> bool:
        return self.server.answer(call_id, 0, "", response, [])

    def export(self, body: bytes, method: str = TRACES, **kwargs: object) -> grpc.Future:
        return self.channel.unary_unary(method).future(body, timeout=10, **kwargs)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0)
        self._taker.join()


@pytest.fixture
def door() -> Iterator[FrontDoor]:
    front = FrontDoor()
    yield front
    front.close()


def test_a_gzip_message_reaches_python_inflated_with_its_service_and_token(door: FrontDoor) -> None:
    body = b"span " * 1000
    call = door.export(
        body, LOGS, compression=grpc.Compression.Gzip, metadata=(("authorization", "Bearer t"),)
    )
    call_id, service, message, authorization = door.next_call()
    assert (service, message, authorization) == (2, body, "Bearer t")
    assert door.ok(call_id, b"answer")
    assert call.result() == b"answer"


def test_a_plain_message_at_the_limit_reaches_python_byte_for_byte(door: FrontDoor) -> None:
    """The message is the request's own buffer past the 5-byte prefix, sized from that prefix:
    several HTTP/2 frames, no byte of the prefix in it, none of the message lost."""
    body = bytes(range(251)) * (LIMIT // 251) + b"end"
    call = door.export(body)
    call_id, service, message, _ = door.next_call()
    assert (service, len(message), message) == (0, len(body), body)
    assert door.ok(call_id, b"answer")
    assert call.result() == b"answer"


def test_an_empty_request_is_a_call_with_an_empty_message(door: FrontDoor) -> None:
    call = door.export(b"")
    call_id, service, message, authorization = door.next_call()
    assert (service, message, authorization) == (0, b"", None)
    door.ok(call_id, b"")
    assert call.result() == b""


@pytest.mark.parametrize(
    ("body", "compression"),
    [(b"x" * (LIMIT + 1), None), (bytes(LIMIT * 64), grpc.Compression.Gzip)],  # zeros: gzip to ~4 KB
    ids=["plain", "gzip bomb"],
)
def test_a_message_over_the_limit_never_reaches_python(
    door: FrontDoor, body: bytes, compression: grpc.Compression | None
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        door.export(body, compression=compression).result()
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, raised.value.details()
    assert door.calls.empty()


def test_an_unknown_method_is_unimplemented(door: FrontDoor) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        door.export(b"", "/opentelemetry.proto.collector.trace.v1.TraceService/Nope").result()
    assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert door.calls.empty()


def test_a_refusal_carries_its_message_and_retry_info_in_trailers(door: FrontDoor) -> None:
    call = door.export(b"request")
    call_id, *_ = door.next_call()
    refusal = outcome.unavailable("kafka: broker down — 100% gone", 2.5)
    door.server.answer(call_id, refusal.code.value[0], refusal.message, b"", error_details(refusal))
    with pytest.raises(grpc.RpcError) as raised:
        call.result()
    error = raised.value
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, refusal.message)
    trailers = dict(error.trailing_metadata())
    retry = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (2, 500_000_000)
    status = Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0] and status.details[0].Is(RetryInfo.DESCRIPTOR)


def test_many_calls_wait_at_once_and_each_gets_its_own_answer(door: FrontDoor) -> None:
    count = 200
    calls = [door.export(f"request {i}".encode()) for i in range(count)]
    taken = [door.next_call() for _ in range(count)]  # all in flight, none answered yet
    with ThreadPoolExecutor(4) as pool:  # answered out of order, from several threads
        list(pool.map(lambda c: door.ok(c[0], c[2].upper()), reversed(taken)))
    assert [call.result() for call in calls] == [f"REQUEST {i}".encode() for i in range(count)]


def test_stop_lets_calls_in_flight_finish_and_refuses_new_connections() -> None:
    door = FrontDoor()
    call = door.export(b"in flight")
    call_id, *_ = door.next_call()
    stopping = threading.Thread(target=door.server.stop, args=(5.0,))
    stopping.start()
    time.sleep(0.3)
    with grpc.insecure_channel(f"127.0.0.1:{door.server.port}") as late:
        with pytest.raises(grpc.RpcError) as raised:
            late.unary_unary(TRACES)(b"late", timeout=2)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert stopping.is_alive(), "stop waits for the call in flight"
    assert door.ok(call_id, b"done")
    assert call.result() == b"done"
    stopping.join(timeout=5)
    assert not stopping.is_alive()
    door.close()


def test_stop_gives_up_on_a_call_unanswered_past_the_grace() -> None:
    door = FrontDoor()
    call = door.export(b"never answered")
    call_id, *_ = door.next_call()
    started = time.monotonic()
    door.server.stop(0.5)
    assert 0.4 < time.monotonic() - started < 3
    with pytest.raises(grpc.RpcError):
        call.result()
    assert not door.ok(call_id, b"too late")
    door.close()


def test_a_port_in_use_is_an_os_error_at_construction(door: FrontDoor) -> None:
    with pytest.raises(OSError, match="cannot bind"):
        GrpcServer(f"127.0.0.1:{door.server.port}", LIMIT)
