"""Coalescing: 200 concurrent cold requests for one 5 MB segment from a throttled origin.

python -m bench.coalescing [--clients 200] [--rate 10]   # rate in MB/s
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web
from yarl import URL

from bench.common import Gateway, free_port, save, workdir


class _Reader(asyncio.Protocol):
    """One HTTP/1.1 GET on its own connection: counts the body, optionally keeps it."""

    def __init__(self, request: bytes, keep: bool) -> None:
        self._request, self._keep = request, keep
        self._head = b""
        self._length: int | None = None
        self._got = 0
        self.body = bytearray()
        self.done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if self._length is None:
            self._head += data
            if b"\r\n\r\n" not in self._head:
                return
            head, _, data = self._head.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    self._length = int(line.split(b":")[1])
            if self._length is None:
                raise RuntimeError(f"no Content-Length in {head[:200]!r}")
        self._got += len(data)
        if self._keep:
            self.body += data
        if self._got >= self._length and not self.done.done():
            self.done.set_result(time.perf_counter())
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("closed before the body ended"))

    @property
    def size(self) -> int:
        return self._got


async def fetch(url: str, *, keep: bool) -> tuple[float, int, bytes]:
    """(finish time, body bytes received, the body if kept)."""
    target = URL(url)
    request = f"GET {target.raw_path_qs} HTTP/1.1\r\nHost: {target.host}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    _, reader = await loop.create_connection(
        lambda: _Reader(request, keep), target.host, target.port
    )
    finished = await reader.done
    return finished, reader.size, bytes(reader.body)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    body = bytes([0x47]) + bytes(5 * 1024 * 1024 - 1)  # a TS sync byte, then 5 MB
    seen = 0
    sent_last = 0.0  # when the origin handed its last byte to the socket

    async def throttled(request: web.Request) -> web.StreamResponse:
        nonlocal seen, sent_last
        seen += 1
        response = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
        response.content_length = len(body)
        await response.prepare(request)
        step = 64 * 1024
        for offset in range(0, len(body), step):
            await response.write(body[offset : offset + step])
            if offset + step < len(body):
                await asyncio.sleep(step / (args.rate * 1024 * 1024))
        sent_last = time.perf_counter()
        return response

    app = web.Application()
    app.router.add_get("/big.ts", throttled)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    with workdir() as work:
        gateway = Gateway(free_port(), work / "cache")
        gateway.start()
        try:
            url = gateway.mint(f"http://127.0.0.1:{port}/big.ts")
            started = time.perf_counter()
            # A few clients keep their bytes to compare; the rest count them, so that the
            # load generator costs little next to the gateway on a 2-core machine.
            clients = [fetch(url, keep=i < 5) for i in range(args.clients)]
            results = await asyncio.gather(*clients)
            finishes = [done - started for done, _, _ in results]
            assert all(size == len(body) for _, size, _ in results)
            assert all(kept in (b"", body) for _, _, kept in results)
        finally:
            gateway.stop()
            await runner.cleanup()
    # The origin shares this process's event loop with the 200 readers, so its pacing runs
    # late when they are busy: besides the nominal transfer time (size / rate), the ratio is
    # also taken against when the origin really sent its last byte. Both are measured from
    # the moment the clients start, as the last client's finish is.
    nominal = len(body) / (args.rate * 1024 * 1024)
    origin_done = sent_last - started
    last = max(finishes)
    print(f"\n## Coalescing: {args.clients} cold clients, one 5 MB segment at {args.rate:g} MB/s\n")
    print(
        "| upstream requests | origin transfer s (nominal / last byte sent) | last client done s "
        "| ratio to nominal | ratio to the origin's last byte |\n|---|---|---|---|---|"
    )
    print(
        f"| {seen} | {nominal:.2f} / {origin_done:.2f} | {last:.2f} | {last / nominal:.2f}× "
        f"| {last / origin_done:.2f}× |"
    )
    summary = {
        "upstream_requests": seen,
        "transfer_s": nominal,
        "origin_last_byte_s": origin_done,
        "last_s": last,
    }
    print(f"results: {save('coalescing', summary)}")


if __name__ == "__main__":
    asyncio.run(main())
