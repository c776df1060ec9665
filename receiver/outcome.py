"""What the receiver answers, once for both transports: a gRPC status and its OTLP/HTTP twin."""

from __future__ import annotations

from dataclasses import dataclass

from grpc import StatusCode


@dataclass(frozen=True)
class Outcome:
    code: StatusCode
    http_status: int
    reason: str  # short label for metrics: "ok", "decode", "too_large", ...
    message: str = ""
    response: bytes = b""  # serialized ExportXServiceResponse, for OK only
    retry_after: float | None = None  # seconds; sent as RetryInfo / Retry-After

    @property
    def ok(self) -> bool:
        return self.code is StatusCode.OK


def accepted(response: bytes) -> Outcome:
    return Outcome(StatusCode.OK, 200, "ok", response=response)


def invalid(message: str) -> Outcome:
    return Outcome(StatusCode.INVALID_ARGUMENT, 400, "decode", message)


def unsupported_media(message: str) -> Outcome:
    return Outcome(StatusCode.INVALID_ARGUMENT, 415, "unsupported_media_type", message)


def too_large(message: str) -> Outcome:
    return Outcome(StatusCode.RESOURCE_EXHAUSTED, 413, "too_large", message)


def unauthenticated() -> Outcome:
    return Outcome(StatusCode.UNAUTHENTICATED, 401, "unauthenticated", "missing or invalid bearer token")


def unavailable(message: str, retry_after: float) -> Outcome:
    return Outcome(StatusCode.UNAVAILABLE, 503, "unavailable", message, retry_after=retry_after)


def overloaded(message: str, retry_after: float) -> Outcome:
    return Outcome(StatusCode.RESOURCE_EXHAUSTED, 429, "overloaded", message, retry_after=retry_after)
