"""Config loading: defaults, environment references, and errors that name the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.config import ConfigError, load_config
from tests.receivers import self_signed_certificate


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "talonflow.yaml"
    path.write_text(text)
    return path


def test_repo_default_file_is_valid() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "talonflow.yaml")
    assert config.receiver.grpc.address == "127.0.0.1:4317"
    assert config.receiver.http.address == "127.0.0.1:4318"
    assert config.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert config.minio.endpoint.address == "127.0.0.1:9000"
    assert config.receiver.max_request_bytes == 4 * 1024 * 1024


def test_units_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "state_dir: st\nreceiver: {max_request_bytes: 512KiB, retry_after: 250ms}\n")
    )
    assert config.receiver.max_request_bytes == 512 * 1024
    assert config.receiver.retry_after == 0.25
    assert config.state_dir == tmp_path / "st"


def test_environment_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        "minio: {secret_key: '${env:TF_TEST_SECRET}'}\nreceiver: {bearer_token: '${env:TF_NONE:-}'}\n",
    )
    monkeypatch.setenv("TF_TEST_SECRET", "hunter2")
    config = load_config(path)
    assert config.minio.secret_key.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(config)  # secrets never print
    assert config.receiver.bearer_token is None  # empty token: auth off
    monkeypatch.delenv("TF_TEST_SECRET")
    with pytest.raises(
        ConfigError, match=r"minio\.secret_key: environment variable TF_TEST_SECRET is not set"
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "receiver: {grpc: {port: 99999}}",
            r"receiver\.grpc\.port: Input should be less than or equal to 65535",
        ),
        ("receiver: {max_request_bytes: 4XB}", r"receiver\.max_request_bytes: .*invalid size '4XB'"),
        ("kafka: {topics: {retention: soon}}", r"kafka\.topics\.retention: .*invalid duration 'soon'"),
        ("kafka: {bootstrap: x}", r"kafka\.bootstrap: Extra inputs are not permitted"),
        ("receiver: {producer: {client: librdkafka}}", r"receiver\.producer\.client: String should match"),
        (
            "receiver: {tls: {cert_file: /nope.crt, key_file: /nope.key}}",
            r"receiver\.tls: .*cert_file: no such file",
        ),
        (
            "receiver: {retry_after: 10s, retry_after_max: 5s}",
            r"receiver: .*retry_after_max must be at least retry_after",
        ),
        ("- a list", r"the top level must be a mapping"),
        ("kafka: [unclosed", r"not valid YAML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_explicit_missing_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    monkeypatch.setenv("TALONFLOW_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config()


def test_tls_files_that_are_not_a_certificate_and_its_key_are_named_when_serving(tmp_path: Path) -> None:
    """grpc only said "Failed to bind" for a bad pair; the receiver and console now say which files
    and what is wrong as they start (serve_config prints it and exits 1)."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    cert, key = self_signed_certificate(first)
    _, other_key = self_signed_certificate(second)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    tls = "receiver: {{tls: {{cert_file: {}, key_file: {}}}}}"
    good = load_config(write(tmp_path, tls.format(cert, key))).receiver.tls
    assert good is not None and good.server_context() is not None
    for cert_file, key_file, problem in (
        (cert, other_key, "the key is not the certificate's"),
        (garbage, key, "not readable as PEM"),
    ):
        config = load_config(write(tmp_path, tls.format(cert_file, key_file))).receiver.tls
        assert config is not None
        with pytest.raises(OSError, match=f"tls: cert_file {cert_file}, key_file {key_file}: {problem}"):
            config.server_context()
