"""The client: connections kept alive per origin and bounded per host, dialled directly,
through an HTTP proxy, or through a CONNECT tunnel, with TLS where the URL asks for it."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from yarl import URL

from gateway.errors import one_line
from gateway.http_client.errors import (
    ConnectError,
    ConnectTimeout,
    HttpError,
    StaleConnection,
)
from gateway.http_client.response import Connection, ConnectionKey, Response

DEFAULT_PORTS = {"http": 80, "https": 443}
_PROXY_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_FORBIDDEN_IN_VALUES = frozenset("\r\n\0")
_FORBIDDEN_IN_NAMES = _FORBIDDEN_IN_VALUES | frozenset(": \t")

Resolve = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class ClientOptions:
    connections_per_host: int = 32  # in use at once per (scheme, host, port); more wait
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    keepalive_seconds: float = 30.0  # an idle connection older than this is not reused
    proxy: str | None = None  # http://[user:password@]host:port
    ssl_context: ssl.SSLContext | None = None  # None: the system's trusted certificates
    resolve: Resolve | None = None  # host, port -> addresses to try in order; None: DNS


class HttpClient:
    """GET over HTTP/1.1. Connections are kept alive per (scheme, host, port), at most
    `connections_per_host` of them in use at once for each; requests beyond that wait."""

    def __init__(self, options: ClientOptions | None = None) -> None:
        self._options = options or ClientOptions()
        self._ssl = self._options.ssl_context
        self._idle: dict[ConnectionKey, list[Connection]] = {}
        self._slots: dict[ConnectionKey, asyncio.Semaphore] = {}
        # Requests holding or awaiting a slot, per key: a key without any, and without idle
        # connections, is forgotten at the next sweep (a gateway meets many origins' hosts).
        self._users: dict[ConnectionKey, int] = {}
        self._open: set[Connection] = set()
        self._swept = time.monotonic()
        self._proxy = proxy_url(self._options.proxy) if self._options.proxy else None
        # A SOCKS proxy tunnels every request; an HTTP proxy is asked for http URLs directly
        # (absolute form) and tunnels https ones (CONNECT).
        self._socks = self._proxy is not None and self._proxy.scheme.startswith("socks5")
        self._proxy_login = _proxy_authorization(self._proxy)  # made once, sent per request

    @property
    def open_connections(self) -> int:
        return sum(1 for connection in self._open if not connection.lost)

    async def close(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()

    async def get(self, url: str | URL, headers: Mapping[str, str] | None = None) -> Response:
        """Send `GET url` with `headers` (and Host, and Accept-Encoding unless given); return
        once the answer's head is in. A pooled connection that the server closed meanwhile
        is replaced once. Raises `ValueError` for a header that would break the request."""
        target = url if isinstance(url, URL) else URL(url, encoded=True)
        if target.scheme not in DEFAULT_PORTS or not target.raw_host:
            raise ValueError("only http(s) URLs with a host")
        tunnel = self._proxy is not None and (self._socks or target.scheme == "https")
        forward = self._proxy is not None and not tunnel
        request = request_bytes(target, headers or {}, self._proxy_login if forward else None)
        key = self._key(target, forward)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = asyncio.Semaphore(self._options.connections_per_host)
        self._users[key] = self._users.get(key, 0) + 1
        try:
            await slot.acquire()
        except BaseException:
            self._leave(key)
            raise
        try:
            pooled = self._checkout(key)
            if pooled is not None:
                try:
                    return await self._ask(pooled, target, request)
                except StaleConnection:
                    pass  # closed by the server while it idled: ask on a new connection
            return await self._ask(await self._dial(target, key, tunnel), target, request)
        except BaseException:
            slot.release()
            self._leave(key)
            raise

    async def _ask(self, connection: Connection, target: URL, request: bytes) -> Response:
        """Send `request` on `connection`; its answer once the head is in."""
        response = Response(self, connection, target, self._options.read_timeout)
        connection.response = response
        assert connection.transport is not None
        connection.transport.write(request)
        try:
            await response.read_head()
        except BaseException:
            self._drop(connection)
            raise
        return response

    def finished(self, connection: Connection, *, reusable: bool) -> None:
        connection.response = None
        if reusable:
            connection.answered += 1
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.key, []).append(connection)
        else:
            self._drop(connection)
        slot = self._slots.get(connection.key)
        if slot is not None:
            slot.release()
        self._leave(connection.key)

    def _drop(self, connection: Connection) -> None:
        connection.close()
        self._open.discard(connection)

    def _leave(self, key: ConnectionKey) -> None:
        users = self._users.get(key, 0) - 1
        if users > 0:
            self._users[key] = users
        else:
            self._users.pop(key, None)

    def _key(self, target: URL, forward: bool) -> ConnectionKey:
        if forward:  # one pool of connections to the proxy, for every http origin
            assert self._proxy is not None
            return ("proxy", self._proxy.raw_host or "", self._proxy_port())
        return (target.scheme, target.raw_host or "", target.port or DEFAULT_PORTS[target.scheme])

    def _checkout(self, key: ConnectionKey) -> Connection | None:
        now = time.monotonic()
        if now - self._swept > self._options.keepalive_seconds:
            self._sweep(now)
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if self._usable(connection, now):
                return connection
            self._drop(connection)
        return None

    def _usable(self, connection: Connection, now: float) -> bool:
        transport = connection.transport
        return (
            not connection.lost
            and transport is not None
            and not transport.is_closing()
            and now - connection.idle_since < self._options.keepalive_seconds
        )

    def _sweep(self, now: float) -> None:
        """Close the idle connections kept too long, for origins not asked again."""
        self._swept = now
        for key, idle in list(self._idle.items()):
            keep = []
            for connection in idle:
                if self._usable(connection, now):
                    keep.append(connection)
                else:
                    self._drop(connection)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        for key in [key for key in self._slots if key not in self._users]:
            if key not in self._idle:
                del self._slots[key]

    @property
    def origins_known(self) -> int:
        """Origins this client keeps anything for (a slot or idle connections)."""
        return len(self._slots.keys() | self._idle.keys())

    async def _dial(self, target: URL, key: ConnectionKey, tunnel: bool) -> Connection:
        host = target.raw_host or ""
        port = target.port or DEFAULT_PORTS[target.scheme]
        tls = target.scheme == "https"
        deadline = asyncio.get_running_loop().time() + self._options.connect_timeout
        try:
            async with asyncio.timeout_at(deadline):
                if self._proxy is None:
                    addresses = await self._resolve(host, port)
                    context = self._context() if tls else None
                    connection = await self._connect(key, addresses, port, context, host, deadline)
                else:
                    connection = await self._to_proxy(key, deadline)
                    if self._socks:
                        await socks5_connect(connection, self._proxy, host, port)
                    elif tunnel:
                        await self._tunnel(connection, host, port)
                    if tunnel and tls:
                        await self._start_tls(connection, host)
        except TimeoutError:
            raise ConnectTimeout("upstream connect timed out") from None
        self._open.add(connection)
        return connection

    async def _to_proxy(self, key: ConnectionKey, deadline: float) -> Connection:
        """A connection to the proxy itself (TLS to it for an https:// proxy; the proxy's
        own address is configured, so it is not held to the address guard)."""
        assert self._proxy is not None
        host = self._proxy.raw_host or ""
        context = self._context() if self._proxy.scheme == "https" else None
        return await self._connect(key, [host], self._proxy_port(), context, host, deadline)

    def _proxy_port(self) -> int:
        assert self._proxy is not None
        return self._proxy.explicit_port or _PROXY_PORTS[self._proxy.scheme]

    async def _resolve(self, host: str, port: int) -> list[str]:
        resolve = self._options.resolve or dns_addresses
        try:
            addresses = await resolve(host, port)
        except OSError as exc:
            raise ConnectError(f"cannot resolve {host}: {one_line(exc, 160)}") from exc
        if not addresses:
            raise ConnectError(f"cannot resolve {host}")
        return addresses

    async def _connect(
        self,
        key: ConnectionKey,
        addresses: list[str],
        port: int,
        context: ssl.SSLContext | None,
        server_name: str | None,
        deadline: float,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        failure: BaseException | None = None
        for tried, address in enumerate(addresses):
            # Each address gets its share of the time left, so that one that never answers
            # (an IPv6 route that goes nowhere) leaves time for the next.
            share = (deadline - loop.time()) / (len(addresses) - tried)
            try:
                async with asyncio.timeout(share):
                    _, connection = await loop.create_connection(
                        lambda: Connection(key),
                        address,
                        port,
                        ssl=context,
                        server_hostname=server_name if context is not None else None,
                    )
            except (OSError, ssl.SSLError) as exc:  # TimeoutError is an OSError
                failure = exc
                continue
            return connection
        if isinstance(failure, TimeoutError):
            raise ConnectTimeout("upstream connect timed out")
        assert failure is not None
        raise ConnectError(one_line(failure, 160)) from failure

    async def _tunnel(self, connection: Connection, host: str, port: int) -> None:
        """Ask the proxy for a tunnel to `host:port` (CONNECT)."""
        authority = f"{bracketed(host)}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        lines += self._proxy_login
        answer = Response(self, connection, URL(), self._options.read_timeout, tunnel=True)
        connection.response = answer
        assert connection.transport is not None
        connection.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            await answer.read_head()
        except HttpError as exc:
            connection.close()
            raise ConnectError("the proxy did not answer CONNECT") from exc
        finally:
            connection.response = None
        if answer.status != 200:
            connection.close()
            raise ConnectError(f"the proxy refused CONNECT ({answer.status})")

    async def _start_tls(self, connection: Connection, host: str) -> None:
        loop = asyncio.get_running_loop()
        assert connection.transport is not None
        try:
            transport = await loop.start_tls(
                connection.transport, connection, self._context(), server_hostname=host
            )
        except (OSError, ssl.SSLError) as exc:
            connection.close()
            raise ConnectError(one_line(exc, 160)) from exc
        if transport is None:  # pragma: no cover - only when the loop closes meanwhile
            raise ConnectError("TLS through the proxy failed")
        connection.transport = transport

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl


def request_bytes(
    target: URL, headers: Mapping[str, str], proxy_login: list[str] | None = None
) -> bytes:
    """The request head for `GET target`; in absolute form, with `proxy_login` (the
    proxy's authorization lines, maybe none), when sent to an HTTP proxy."""
    host = bracketed(target.raw_host or "")
    if target.explicit_port is not None and target.explicit_port != DEFAULT_PORTS[target.scheme]:
        host = f"{host}:{target.explicit_port}"
    path = target.raw_path_qs or "/"
    request_target = f"{target.scheme}://{host}{path}" if proxy_login is not None else path
    lines = [f"GET {request_target} HTTP/1.1", f"Host: {host}"]
    encoding_given = False
    for name, value in headers.items():
        if not name or not _FORBIDDEN_IN_NAMES.isdisjoint(name):
            raise ValueError(f"invalid header name {name!r}")
        if not _FORBIDDEN_IN_VALUES.isdisjoint(value):
            raise ValueError(f"invalid value for header {name}")
        lowered = name.lower()
        if lowered == "host":
            continue
        encoding_given = encoding_given or lowered == "accept-encoding"
        lines.append(f"{name}: {value}")
    if not encoding_given:
        lines.append("Accept-Encoding: gzip, deflate")
    if proxy_login:
        lines += proxy_login
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


async def socks5_connect(connection: Connection, proxy: URL, host: str, port: int) -> None:
    """Ask the SOCKS5 proxy on `connection` for a stream to `host:port` (RFC 1928), with
    the user name and password of `proxy` when it has them (RFC 1929). Names are sent as
    they are, for the proxy to resolve."""
    assert connection.transport is not None
    write = connection.transport.write
    connection.handshaking = True
    try:
        if proxy.user is not None:
            write(b"\x05\x02\x00\x02")
        else:
            write(b"\x05\x01\x00")
        version, method = await connection.read_exactly(2)
        if version != 5 or method not in (0, 2):
            raise ConnectError("the SOCKS proxy accepts none of the offered logins")
        if method == 2:
            user = (proxy.user or "").encode()
            password = (proxy.password or "").encode()
            write(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
            if (await connection.read_exactly(2))[1] != 0:
                raise ConnectError("the SOCKS proxy refused the login")
        write(b"\x05\x01\x00" + _socks_address(host) + port.to_bytes(2, "big"))
        _, reply, _, kind = await connection.read_exactly(4)
        if reply != 0:
            raise ConnectError(f"the SOCKS proxy refused the connection ({reply})")
        size = {1: 4, 4: 16}.get(kind)
        if size is None:
            size = (await connection.read_exactly(1))[0]
        await connection.read_exactly(size + 2)  # where the proxy connected from
    except (ConnectionError, ValueError) as exc:
        connection.close()
        raise ConnectError(f"the SOCKS proxy failed: {one_line(exc, 160)}") from exc
    except ConnectError:
        connection.close()
        raise
    finally:
        connection.handshaking = False


def _socks_address(host: str) -> bytes:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        if len(name) > 255:
            raise ValueError("host name too long") from None
        return b"\x03" + bytes([len(name)]) + name
    return (b"\x01" if address.version == 4 else b"\x04") + address.packed


def _proxy_authorization(proxy: URL | None) -> list[str]:
    if proxy is None or proxy.user is None:
        return []
    credentials = f"{proxy.user}:{proxy.password or ''}".encode()
    return [f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode('ascii')}"]


def proxy_url(value: str) -> URL:
    """`value` as a proxy this client speaks (http, https, socks5), or `ValueError`."""
    url = URL(value)
    if url.scheme not in _PROXY_PORTS or not url.raw_host:
        raise ValueError("must be an http://, https:// or socks5:// proxy URL")
    return url


async def dns_addresses(host: str, port: int) -> list[str]:
    """The addresses DNS gives for `host`, each once, in the order given."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def bracketed(host: str) -> str:
    """`host` as written in a Host field or an authority: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
