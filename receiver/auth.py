"""Optional bearer-token check, shared by both transports. The token is never logged."""

from __future__ import annotations

import hmac

from pydantic import SecretStr


class BearerAuth:
    def __init__(self, token: SecretStr | None) -> None:
        self._expected = f"Bearer {token.get_secret_value()}".encode() if token else None

    @property
    def required(self) -> bool:
        """Whether a token is configured; without one a caller need not even read its headers."""
        return self._expected is not None

    def allows(self, authorization: str | None) -> bool:
        """True when no token is configured, or the header carries it (constant-time compare)."""
        if self._expected is None:
            return True
        return hmac.compare_digest((authorization or "").encode(), self._expected)
