"""Bearer token or HTTP basic auth for every console route but /healthz, when configured."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from receiver.auth import BearerAuth
from schemas.console import ConsoleConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/healthz"})  # for supervisors and load balancers


def _basic_allows(expected: tuple[str, str], authorization: str | None) -> bool:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # both compared, always: no early exit that tells which one was wrong
    same_user = hmac.compare_digest(username.encode(), expected[0].encode())
    same_password = hmac.compare_digest(password.encode(), expected[1].encode())
    return same_user and same_password


def auth_middleware(config: ConsoleConfig) -> Middleware:
    bearer = BearerAuth(config.bearer_token) if config.bearer_token else None
    basic = (
        (config.basic_auth.username, config.basic_auth.password.get_secret_value())
        if config.basic_auth
        else None
    )

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or (bearer is None and basic is None):
            return await handler(request)
        authorization = request.headers.get("Authorization")
        if bearer is not None and bearer.allows(authorization):
            return await handler(request)
        if basic is not None and _basic_allows(basic, authorization):
            return await handler(request)
        challenge = 'Basic realm="talonflow"' if basic is not None else 'Bearer realm="talonflow"'
        return web.Response(status=401, text="401: unauthorized\n", headers={"WWW-Authenticate": challenge})

    return check
