"""TLS settings shared by the parts that serve HTTP or gRPC (the receiver, the console)."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import model_validator

from schemas.types import Strict


class TlsConfig(Strict):
    cert_file: Path
    key_file: Path

    @model_validator(mode="after")
    def _files_exist(self) -> TlsConfig:
        for name in ("cert_file", "key_file"):
            if not getattr(self, name).is_file():
                raise ValueError(f"{name}: no such file: {getattr(self, name)}")
        return self

    def server_context(self) -> ssl.SSLContext:
        """The context to serve with; an OSError that names both files and the problem when they
        are not a PEM certificate and its key (grpc would only say "Failed to bind")."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except ssl.SSLError as err:
            mismatch = err.reason == "KEY_VALUES_MISMATCH"
            problem = "the key is not the certificate's" if mismatch else "not readable as PEM"
            raise OSError(f"tls: cert_file {self.cert_file}, key_file {self.key_file}: {problem}") from None
        return context
