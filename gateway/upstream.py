"""The one upstream HTTP client: pooled, time-limited, refusing private addresses on every hop."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from multidict import CIMultiDictProxy
from yarl import URL

from gateway.addresses import host_allowed, is_public_address, literal_address
from gateway.errors import ForbiddenUpstream, UpstreamError, UpstreamTimeout
from gateway.settings import Settings
from gateway.signing import Headers
from playlists.urls import resolve

log = logging.getLogger("gateway.upstream")

# The id of the client request an upstream request is made for; single-flight fills run in
# a task copied from the first client's context, so they carry that client's id.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Credentials bound to one host never follow a redirect to another.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie"})
CHUNK_BYTES = 256 * 1024


class ForbiddenAddressError(OSError):
    """Raised inside the connector so that aiohttp never connects to a refused address."""


class GuardedResolver(AbstractResolver):
    """Resolves, then refuses non-public addresses; the connector dials exactly what was checked."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # "localhost." is "localhost" written as a fully qualified name; some resolvers only
        # know the short spelling, and RFC 6761 reserves the whole name for loopback anyway.
        name = host.rstrip(".")
        if name.lower() == "localhost" or name.lower().endswith(".localhost"):
            raise ForbiddenAddressError(f"{host} is a loopback name")
        results = await self._inner.resolve(name, port, family)
        for result in results:
            if not is_public_address(ipaddress.ip_address(result["host"])):
                raise ForbiddenAddressError(f"{host} resolves to a private address")
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(slots=True)
class UpstreamResponse:
    """An open upstream response; iterate `chunks()` and then `release()`."""

    url: str
    status: int
    headers: CIMultiDictProxy[str]
    _response: aiohttp.ClientResponse
    # A body that trickles (1 byte/s never trips the read timeout) still ends by this time.
    deadline: float = float("inf")

    @property
    def content_length(self) -> int | None:
        if "Content-Encoding" in self.headers:
            return None  # aiohttp decodes the body, so the wire length no longer applies
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK_BYTES):
                if time.monotonic() > self.deadline:
                    raise UpstreamTimeout("upstream body took too long")
                yield chunk
        except TimeoutError:
            raise UpstreamTimeout("upstream stalled mid-body") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"upstream body failed: {type(exc).__name__}") from None

    async def read(self, limit: int) -> bytes:
        """The whole body, refusing anything larger than `limit`."""
        declared = self.content_length
        if declared is not None and declared > limit:
            raise UpstreamError(f"upstream body too large ({declared} bytes)")
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise UpstreamError(f"upstream body larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def hold_reading(self) -> Callable[[], None]:
        """Read nothing more from upstream until the returned function is called.

        An event loop reads ready sockets before it runs the tasks woken meanwhile, so
        without this the clients handed a fill's first chunk waited behind the next
        reads of its body (0.1-0.6 ms per cold miss, `bench/miss_ttfb.py`). Reading that
        aiohttp's own flow control already holds is left alone.
        """
        connection = self._response.connection
        transport = connection.transport if connection is not None else None
        if transport is None or not transport.is_reading():
            return _nothing

        def resume() -> None:
            if not transport.is_closing():
                transport.resume_reading()

        transport.pause_reading()
        return resume

    def release(self) -> None:
        self._response.release()

    def abort(self) -> None:
        self._response.close()


def _nothing() -> None:
    pass


def _map_status(status: int, retry_after: str | None = None) -> UpstreamError:
    # A 429 or 503 with Retry-After is passed on as such, so players back off instead of
    # hammering the origin through the gateway.
    if retry_after is not None and retry_after.strip().isdigit() and status in (429, 503):
        return UpstreamError(f"upstream answered {status}", status, {"Retry-After": retry_after})
    if status >= 500:
        return UpstreamError(f"upstream answered {status}", 502)
    return UpstreamError(f"upstream answered {status}", status)


class UpstreamClient:
    """Owns the single pooled `ClientSession` that every upstream request goes through."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        resolver: AbstractResolver = (
            ThreadedResolver() if self._settings.allow_private_upstreams else GuardedResolver()
        )
        connector = aiohttp.TCPConnector(
            resolver=resolver,
            limit=0,
            limit_per_host=self._settings.upstream_connections_per_host,
            ttl_dns_cache=30,
            keepalive_timeout=30,
        )
        # `connect` would also count the wait for a free pooled connection, so a burst of
        # cold misses beyond the per-host limit timed out without upstream being slow.
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self._settings.upstream_connect_timeout,
            sock_read=self._settings.upstream_read_timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check_url(self, url: str) -> URL:
        """Refuse non-http(s) schemes, hosts outside the allow/deny lists and literal private
        addresses, before any socket opens."""
        try:
            parsed = URL(url, encoded=True)
        except (ValueError, TypeError):
            raise UpstreamError("invalid upstream URL", 400) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise UpstreamError("upstream URL must be http(s)", 400)
        settings = self._settings
        if not host_allowed(parsed.host, settings.upstream_allow, settings.upstream_deny):
            raise ForbiddenUpstream("upstream host not allowed")
        if not self._settings.allow_private_upstreams:
            address = literal_address(parsed.raw_host or "")
            if address is not None and not is_public_address(address):
                raise ForbiddenUpstream("upstream address is private")
        return parsed

    async def open(
        self, url: str, headers: Headers, *, range_header: str | None = None
    ) -> UpstreamResponse:
        """GET `url` byte-exact, following redirects (each hop checked). Raises mapped errors."""
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        send: dict[str, str] = dict(headers)
        send.setdefault("User-Agent", "hls-gateway/0.1")
        if range_header:
            send["Range"] = range_header
        current = url
        origin: URL | None = None
        for _hop in range(self._settings.upstream_max_redirects + 1):
            target = self.check_url(current)
            if origin is None:
                origin = target.origin()
            elif target.origin() != origin:
                send = {k: v for k, v in send.items() if k.lower() not in _CREDENTIAL_HEADERS}
            response = await self._request(target, send)
            if response.status in _REDIRECTS and "Location" in response.headers:
                location = response.headers["Location"]
                response.release()
                current = resolve(current, location)
                continue
            if response.status >= 400:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                response.release()
                raise _map_status(status, retry_after)
            deadline = time.monotonic() + self._settings.upstream_body_timeout
            return UpstreamResponse(current, response.status, response.headers, response, deadline)
        raise UpstreamError("too many upstream redirects")

    async def _request(self, target: URL, headers: dict[str, str]) -> aiohttp.ClientResponse:
        assert self._session is not None
        kwargs: dict[str, Any] = {"headers": headers, "allow_redirects": False}
        if self._settings.egress_proxy:
            # The egress that page extraction used: extracted URLs are often bound to its IP.
            kwargs["proxy"] = self._settings.egress_proxy
        request_id = REQUEST_ID.get()
        if request_id:
            headers = {**headers, "X-Request-Id": request_id}
            kwargs["headers"] = headers
        try:
            return await self._session.get(target, **kwargs)
        except TimeoutError:
            raise UpstreamTimeout("upstream timed out") from None
        except aiohttp.ClientConnectorError as exc:
            if _is_forbidden(exc):
                raise ForbiddenUpstream("upstream address is private") from None
            raise UpstreamError(f"upstream unreachable: {_short(exc)}") from None
        except aiohttp.InvalidURL:
            raise UpstreamError("invalid upstream URL", 400) from None
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError(f"upstream failed: {_short(exc)}") from None


def _is_forbidden(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ForbiddenAddressError):
            return True
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return False


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
