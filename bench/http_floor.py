"""The least an HTTP proxy written in Python adds to a cold miss on this machine, for
`bench.miss_ttfb`.

    python -m bench.http_floor --port 8082 --upstream 127.0.0.1:8080

Where `bench.relay` copies bytes blindly, this one does what any HTTP proxy must on the way
to a first byte, and nothing else: it reads the request line, asks upstream for the same
path on a kept-alive connection, finds the end of the answer's head, takes its status and
Content-Length, and writes its own head with the first body bytes it has; the rest is copied
as it comes. Everything runs in the protocols' callbacks: no task, no cache, no file, no
signature. It serves only what the benchmark asks (GET, a Content-Length from upstream), and
it is not a gateway; it tells how much of the gateway's overhead is what Python and the
event loop cost here, and how much is the gateway's own work.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import cast

from bench.common import relay_main, start_relay_process


class _Upstream(asyncio.Protocol):
    """One kept-alive upstream connection, answering one client request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.client: asyncio.Transport | None = None
        self._head = b""
        self._remaining = -1  # body bytes still to come; -1 while reading a head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def ask(self, client: asyncio.Transport, request: bytes) -> None:
        assert self.transport is not None
        self.client = client
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:
            return
        if self._remaining >= 0:
            self._remaining -= len(data)
            client.write(data)
        else:
            data = self._head + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._head = data
                return
            self._head = b""
            lines = data[:end].split(b"\r\n")
            status = lines[0].split(b" ", 2)[1]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = data[end + 4 :]
            self._remaining = length - len(body)
            head = b"HTTP/1.1 %s \r\nContent-Length: %d\r\n\r\n" % (status, length)
            client.writelines([head, body])
        if self._remaining == 0:
            self._remaining = -1
            self.client = None
            self._pool.idle.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self._pool.idle:
            self._pool.idle.remove(self)
        if self.client is not None:
            self.client.close()


class _Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Upstream] = []

    def ask(self, client: asyncio.Transport, path: bytes) -> None:
        request = b"GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, self.host.encode(), self.port)
        if self.idle:
            self.idle.pop().ask(client, request)
        else:
            asyncio.get_running_loop().create_task(self._dial(client, request))

    async def _dial(self, client: asyncio.Transport, request: bytes) -> None:
        try:
            _, upstream = await asyncio.get_running_loop().create_connection(
                lambda: _Upstream(self), self.host, self.port
            )
        except OSError:
            client.close()
            return
        upstream.ask(client, request)


class _Client(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        path = data[: data.find(b"\r\n")].split(b" ")[1]
        self._pool.ask(self._transport, path)


def _protocols(host: str, port: int) -> Callable[[], asyncio.Protocol]:
    pool = _Pool(host, port)
    return lambda: _Client(pool)


def start_http_floor(port: int, upstream: str) -> subprocess.Popen[bytes]:
    return start_relay_process("bench.http_floor", port, upstream)


if __name__ == "__main__":
    relay_main(_protocols)
