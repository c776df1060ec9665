"""A real Prometheus 2.42 remote-writes over TLS with a bearer token into a receiver that demands both.

Prometheus trusts the receiver's self-signed certificate through `tls_config: ca_file` and sends
the token with `authorization:`. A second remote_write of the same Prometheus carries a wrong
token: its every request is a 401 with a body saying why, which Prometheus logs and does not
retry (its rule for 4xx), so nothing it sends lands; the right one lands every sample once.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from receiver.remote_write import PATH
from schemas.config import Endpoint, TalonflowConfig, TlsConfig
from tests.conftest import LocalStack
from tests.receivers import running_receiver, self_signed_certificate
from tests.scrape_targets import seed_registry, serve_registry
from tests.test_remote_write import HEADERS, snappy, write_request
from tests.test_scrape_prometheus import (
    assert_remote_written_once,
    prometheus_samples,
    run_prometheus,
    wait_until,
)

pytestmark = pytest.mark.integration

# Ports of this test (range 30000-30499).
EXPORTER, PROMETHEUS, GRPC, HTTP, OPS = 30011, 30090, 30317, 30318, 30133
TOKEN = "remote-write-token"
JOB = "rw-secure"


@pytest.fixture(scope="module")
def secured(local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The receiver with a token and TLS (the session's Kafka): its write URL and its certificate."""
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("rw-tls"))
    receiver = local_stack.config.receiver.model_copy(
        update={
            "grpc": Endpoint(port=GRPC),
            "http": Endpoint(port=HTTP),
            "ops": Endpoint(port=OPS),
            "bearer_token": SecretStr(TOKEN),
            "tls": TlsConfig(cert_file=cert, key_file=key),
        }
    )
    config: TalonflowConfig = local_stack.config.model_copy(update={"receiver": receiver})
    with running_receiver(config):
        yield f"https://127.0.0.1:{HTTP}{PATH}", cert


def post(url: str, cert: Path, authorization: str | None) -> tuple[int, str]:
    headers = {**HEADERS, **({"Authorization": authorization} if authorization else {})}
    body = snappy(write_request("rw-direct", "direct", 1))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    context = ssl.create_default_context(cafile=str(cert))
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_a_wrong_or_missing_token_is_401_with_a_clear_body_and_tls_is_required(
    secured: tuple[str, Path],
) -> None:
    url, cert = secured
    assert post(url, cert, "Bearer wrong") == (401, "missing or invalid bearer token\n")
    assert post(url, cert, None) == (401, "missing or invalid bearer token\n")
    assert post(url, cert, f"Bearer {TOKEN}") == (204, "")
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(url, data=b"", timeout=10)  # an https client that does not trust it
    with pytest.raises(OSError):  # no plain http: the TLS server hangs up
        urllib.request.urlopen(url.replace("https", "http"), data=b"", timeout=10)


def test_prometheus_with_the_token_and_the_ca_lands_every_sample_once_and_a_wrong_token_nothing(
    local_stack: LocalStack, secured: tuple[str, Path], tmp_path: Path
) -> None:
    url, cert = secured
    queue = {"batch_send_deadline": "500ms", "min_backoff": "100ms", "max_backoff": "1s"}
    write: dict[str, Any] = {"url": url, "tls_config": {"ca_file": str(cert)}, "queue_config": queue}
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{EXPORTER}"]}]}],
        "remote_write": [
            {**write, "name": "right", "authorization": {"credentials": TOKEN}},
            {**write, "name": "wrong", "authorization": {"credentials": "not-the-token"}},
        ],
    }
    exporter = serve_registry(seed_registry(), EXPORTER)
    try:
        with run_prometheus(tmp_path, config, PROMETHEUS) as log:
            time.sleep(8)  # several scrapes and remote-writes
            at = time.time() - 1
            stored = prometheus_samples(at, JOB, PROMETHEUS)
            assert_remote_written_once(local_stack.config.data_dir, stored, JOB, at)
            refused = wait_until(
                # "HTTP status 401": a bare "401" also matches durations ("notify_sd=1.401µs")
                lambda: [line for line in log.read_text().splitlines() if "HTTP status 401" in line],
                30,
                "Prometheus logging the 401",
            )
    finally:
        exporter.shutdown()
        exporter.server_close()
    assert "remote_name=wrong" in refused[0] and "non-recoverable" in refused[0], refused[0]
    assert "401 Unauthorized: missing or invalid bearer token" in refused[0], refused[0]
    # the right one may be told to retry (503 while a loaded machine delays Kafka), never refused
    lines = log.read_text().splitlines()
    assert not [line for line in lines if "remote_name=right" in line and "non-recoverable" in line]
