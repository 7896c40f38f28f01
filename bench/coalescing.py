"""Coalescing: 200 concurrent cold requests for one 5 MB segment from a throttled origin.

python -m bench.coalescing [--clients 200] [--rate 10]   # rate in MB/s
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
from aiohttp import web

from bench.common import Gateway, free_port, save, workdir


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    body = bytes([0x47]) + bytes(5 * 1024 * 1024 - 1)  # a TS sync byte, then 5 MB
    seen = 0

    async def throttled(request: web.Request) -> web.StreamResponse:
        nonlocal seen
        seen += 1
        response = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
        response.content_length = len(body)
        await response.prepare(request)
        step = 64 * 1024
        for offset in range(0, len(body), step):
            await response.write(body[offset : offset + step])
            await asyncio.sleep(step / (args.rate * 1024 * 1024))
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
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

                async def one() -> float:
                    async with session.get(url) as response:
                        assert len(await response.read()) == len(body)
                    return time.perf_counter() - started

                finishes = await asyncio.gather(*(one() for _ in range(args.clients)))
        finally:
            gateway.stop()
            await runner.cleanup()
    transfer = len(body) / (args.rate * 1024 * 1024)
    last = max(finishes)
    print(f"\n## Coalescing: {args.clients} cold clients, one 5 MB segment at {args.rate:g} MB/s\n")
    print(
        "| upstream requests | origin transfer s | last client done s | ratio |\n|---|---|---|---|"
    )
    print(f"| {seen} | {transfer:.2f} | {last:.2f} | {last / transfer:.2f}× |")
    print(
        f"results: {save('coalescing', {'upstream_requests': seen, 'transfer_s': transfer, 'last_s': last})}"
    )


if __name__ == "__main__":
    asyncio.run(main())
