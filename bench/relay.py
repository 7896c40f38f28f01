"""A bare TCP relay on uvloop: the least a proxy process adds to a request's time on this
machine, for `bench.miss_ttfb`.

    python -m bench.relay --port 8081 --upstream 127.0.0.1:8080

Each client connection gets its own upstream connection, and bytes are copied both ways as
they are: no HTTP parsing, no cache, no file. What it adds over fetching from the origin
directly is what any proxy pays here: one more process to wake for the request and one for
the answer, and the bytes copied through one more pair of sockets.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

from bench.common import relay_main, start_relay_process


class _Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self._client = client

    def data_received(self, data: bytes) -> None:
        self._client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client.close()


class _Client(asyncio.Protocol):
    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._upstream: asyncio.Transport | None = None
        self._early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one.
        asyncio.get_running_loop().create_task(self._connect(transport))  # type: ignore[arg-type]

    async def _connect(self, client: asyncio.Transport) -> None:
        try:
            upstream, _ = await asyncio.get_running_loop().create_connection(
                lambda: _Upstream(client), *self._address
            )
        except OSError:
            client.close()
            return
        self._upstream = upstream
        for data in self._early:
            upstream.write(data)
        self._early.clear()

    def data_received(self, data: bytes) -> None:
        if self._upstream is None:
            self._early.append(data)
        else:
            self._upstream.write(data)

    # A client slower than upstream holds upstream back instead of filling memory.
    def pause_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upstream is not None:
            self._upstream.close()


def _protocols(host: str, port: int) -> Callable[[], asyncio.Protocol]:
    return lambda: _Client(host, port)


def start_relay(port: int, upstream: str) -> subprocess.Popen[bytes]:
    return start_relay_process("bench.relay", port, upstream)


if __name__ == "__main__":
    relay_main(_protocols)
