"""The one upstream HTTP client: pooled, time-limited, refusing private addresses on every hop."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from multidict import CIMultiDictProxy
from yarl import URL

from gateway.addresses import host_allowed, is_public_address, literal_address
from gateway.errors import ForbiddenUpstream, UpstreamError, UpstreamTimeout, one_line
from gateway.http_client import (
    BodyChunk,
    ClientOptions,
    ConnectError,
    ConnectTimeout,
    HttpClient,
    HttpError,
    ReadTimeout,
    Response,
    dns_addresses,
)
from gateway.recent import LapsingMap
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


class ForbiddenAddressError(OSError):
    """Raised while resolving, so that the client never connects to a refused address."""


class Resolver:
    """Host names to the addresses to dial, kept for `ttl` seconds. With `guard`, a name
    that resolves to any non-public address is refused: the client dials exactly what was
    checked, so a name cannot be pointed elsewhere between the check and the dial."""

    def __init__(self, *, guard: bool, ttl: float = 30.0) -> None:
        self._guard = guard
        self._known: LapsingMap[str, list[str]] = LapsingMap(1024, ttl)

    async def resolve(self, host: str, port: int) -> list[str]:
        # "localhost." is "localhost" written as a fully qualified name; some resolvers only
        # know the short spelling, and RFC 6761 reserves the whole name for loopback anyway.
        name = host.rstrip(".")
        if self._guard and (name.lower() == "localhost" or name.lower().endswith(".localhost")):
            raise ForbiddenAddressError(f"{host} is a loopback name")
        known = self._known.get(name)
        if known is not None:
            return known
        addresses = await self._lookup(name, port)
        if self._guard:
            for address in addresses:
                if not is_public_address(ipaddress.ip_address(address)):
                    raise ForbiddenAddressError(f"{host} resolves to a private address")
        self._known[name] = addresses
        return addresses

    async def _lookup(self, host: str, port: int) -> list[str]:
        return await dns_addresses(host, port)


@dataclass(slots=True)
class UpstreamResponse:
    """An open upstream response; iterate `chunks()` and then `release()`."""

    url: str
    status: int
    headers: CIMultiDictProxy[str]
    _response: Response
    # A body that trickles (1 byte/s never trips the read timeout) still ends by this time.
    deadline: float = float("inf")

    @property
    def content_length(self) -> int | None:
        if "Content-Encoding" in self.headers:
            return None  # the client decodes the body, so the wire length no longer applies
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    async def chunks(self) -> AsyncIterator[BodyChunk]:
        try:
            async for chunk in self._response.iter_chunks():
                if time.monotonic() > self.deadline:
                    raise UpstreamTimeout("upstream body took too long")
                yield chunk
        except ReadTimeout:
            raise UpstreamTimeout("upstream stalled mid-body") from None
        except (HttpError, OSError) as exc:
            raise UpstreamError(f"upstream body failed: {type(exc).__name__}") from None

    async def read(self, limit: int) -> bytes:
        """The whole body, refusing anything larger than `limit`."""
        declared = self.content_length
        if declared is not None and declared > limit:
            raise UpstreamError(f"upstream body too large ({declared} bytes)")
        parts: list[BodyChunk] = []
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
        reads of its body (0.1-0.6 ms per cold miss, `bench/miss_ttfb.py`).
        """
        return self._response.hold_reading()

    def release(self) -> None:
        self._response.release()

    def abort(self) -> None:
        self._response.close()


def _map_status(status: int, retry_after: str | None = None) -> UpstreamError:
    # A 429 or 503 with Retry-After is passed on as such, so players back off instead of
    # hammering the origin through the gateway.
    if retry_after is not None and retry_after.strip().isdigit() and status in (429, 503):
        return UpstreamError(f"upstream answered {status}", status, {"Retry-After": retry_after})
    if status >= 500:
        return UpstreamError(f"upstream answered {status}", 502)
    return UpstreamError(f"upstream answered {status}", status)


class UpstreamClient:
    """Every upstream request goes through here: one pooled `HttpClient`, the address guard
    on every hop, redirects followed, statuses mapped to the gateway's errors."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: HttpClient | None = None

    async def start(self) -> None:
        settings = self._settings
        resolver = Resolver(guard=not settings.allow_private_upstreams)
        self._client = HttpClient(
            ClientOptions(
                connections_per_host=settings.upstream_connections_per_host,
                connect_timeout=settings.upstream_connect_timeout,
                read_timeout=settings.upstream_read_timeout,
                keepalive_seconds=30.0,
                # The egress that page extraction used: extracted URLs are often bound to its IP.
                proxy=settings.egress_proxy or None,
                resolve=resolver.resolve,
            )
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

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
        assert self._client is not None, "UpstreamClient.start() was not awaited"
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

    async def _request(self, target: URL, headers: dict[str, str]) -> Response:
        assert self._client is not None
        request_id = REQUEST_ID.get()
        if request_id:
            headers = {**headers, "X-Request-Id": request_id}
        try:
            return await self._client.get(target, headers)
        except (ConnectTimeout, ReadTimeout):
            raise UpstreamTimeout("upstream timed out") from None
        except ConnectError as exc:
            if _is_forbidden(exc):
                raise ForbiddenUpstream("upstream address is private") from None
            raise UpstreamError(f"upstream unreachable: {one_line(exc, 160)}") from None
        except ValueError:
            raise UpstreamError("invalid upstream request", 400) from None
        except (HttpError, OSError) as exc:
            raise UpstreamError(f"upstream failed: {one_line(exc, 160)}") from None


def _is_forbidden(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ForbiddenAddressError):
            return True
        seen = seen.__cause__
    return False
