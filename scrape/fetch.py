"""One HTTP scrape of a target: auth, TLS, timeout, gzip and a body size limit, as Prometheus does."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from receiver.http_server import inflate_gzip
from schemas.scrape import ScrapeConfig
from scrape.parse import ACCEPT


class ScrapeError(Exception):
    """The target did not deliver a usable body; the message is what the log line says."""


@dataclass(frozen=True)
class Body:
    text: str
    content_type: str


def _secret(value: SecretStr | None, path: Path | None) -> str:
    if path is not None:
        return path.read_text().strip()
    return value.get_secret_value() if value is not None else ""


def ssl_context(job: ScrapeConfig) -> ssl.SSLContext | bool:
    tls = job.tls_config
    if tls is None:
        return True  # aiohttp's default verification
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file and tls.key_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def headers(job: ScrapeConfig) -> dict[str, str]:
    """Accept as Prometheus sends it, gzip, and the job's credentials (files read at each scrape)."""
    found = {"Accept": ACCEPT, "Accept-Encoding": "gzip", "User-Agent": "talonflow-scraper"}
    found["X-Prometheus-Scrape-Timeout-Seconds"] = f"{job.scrape_timeout:g}"
    if job.basic_auth is not None:
        auth = job.basic_auth
        password = _secret(auth.password, auth.password_file)
        found["Authorization"] = aiohttp.BasicAuth(auth.username, password).encode()
    elif job.authorization is not None:
        auth_z = job.authorization
        found["Authorization"] = f"{auth_z.type} {_secret(auth_z.credentials, auth_z.credentials_file)}"
    return found


async def fetch(
    session: aiohttp.ClientSession, url: str, job: ScrapeConfig, context: ssl.SSLContext | bool
) -> Body:
    """The body, decompressed; ScrapeError for a non-200, a timeout, or a body past the limit."""
    limit = job.body_size_limit
    server_name = job.tls_config.server_name if job.tls_config else None
    try:
        async with session.get(
            url,
            headers=headers(job),
            timeout=aiohttp.ClientTimeout(total=job.scrape_timeout),
            ssl=context,
            server_hostname=server_name,
        ) as response:
            if response.status != 200:
                raise ScrapeError(f"server returned HTTP status {response.status} {response.reason}")
            if (response.content_length or 0) > limit:
                raise ScrapeError(f"body of {response.content_length} bytes exceeds body_size_limit {limit}")
            chunks, size = [], 0
            async for chunk in response.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > limit:  # stop reading: a runaway body costs the limit, no more
                    raise ScrapeError(f"body exceeds body_size_limit of {limit} bytes")
                chunks.append(chunk)
            raw = b"".join(chunks)
            if response.headers.get("Content-Encoding", "").lower() == "gzip":
                raw = inflate_gzip(raw, limit)
            return Body(raw.decode("utf-8", errors="replace"), response.headers.get("Content-Type", ""))
    except TimeoutError as err:
        raise ScrapeError(f"scrape timed out after {job.scrape_timeout:g}s") from err
    except aiohttp.ClientError as err:
        raise ScrapeError(f"cannot scrape: {err}") from err
    except OverflowError as err:
        raise ScrapeError(f"decompressed body exceeds body_size_limit: {err}") from err
    except ValueError as err:
        raise ScrapeError(str(err)) from err
