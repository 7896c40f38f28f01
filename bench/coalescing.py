"""Coalescing: 200 concurrent cold requests for one 5 MB segment from a throttled origin.

python -m bench.coalescing [--clients 200] [--rate 10]   # rate in MB/s

The origin (`bench.throttled_origin`) runs in a process of its own and keeps to its rate's
schedule, so its transfer takes size / rate whatever the 200 clients cost this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.request

from yarl import URL

from bench.common import ROOT, Gateway, free_port, save, wait_port, workdir
from bench.throttled_origin import body as origin_body


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


async def run_clients(url: str, clients: int, body: bytes) -> tuple[float, list[float]]:
    """When the clients started, and each one's finish, from that start."""
    started = time.perf_counter()
    # A few clients keep their bytes to compare; the rest count them, so that the load
    # generator costs little next to the gateway on a 2-core machine.
    results = await asyncio.gather(*(fetch(url, keep=i < 5) for i in range(clients)))
    assert all(size == len(body) for _, size, _ in results)
    assert all(kept in (b"", body) for _, _, kept in results)
    return started, [done - started for done, _, _ in results]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    body = origin_body(5 * 1024 * 1024)  # a TS sync byte, then zeros
    port = free_port()
    origin = subprocess.Popen(
        [sys.executable, "-m", "bench.throttled_origin", "--port", str(port),
         "--rate", str(args.rate), "--size-mb", "5"],
        cwd=ROOT,
    )  # fmt: skip
    try:
        wait_port(port)
        with workdir() as work:
            gateway = Gateway(free_port(), work / "cache")
            gateway.start()
            try:
                url = gateway.mint(f"http://127.0.0.1:{port}/big.ts")
                started, finishes = asyncio.run(run_clients(url, args.clients, body))
            finally:
                gateway.stop()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats") as answer:
            stats = json.load(answer)
    finally:
        origin.terminate()
        origin.wait(10)
    seen = stats["requests"]
    # Besides the nominal transfer time (size / rate), the ratio is also taken against when
    # the origin really sent its last byte. Both are measured from the moment the clients
    # start, as the last client's finish is.
    nominal = len(body) / (args.rate * 1024 * 1024)
    origin_done = stats["last_byte_sent"] - started
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
    main()
