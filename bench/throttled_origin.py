"""An origin that sends one object at a fixed rate, in a process of its own.

    python -m bench.throttled_origin --port 8090 --rate 10 [--size-mb 5]

`GET /big.ts` sends a TS sync byte and then zeros (`body(size)`), 64 KB at a time, each
chunk once the rate allows its last byte, counted from the response's start (a chunk sent
late is followed at once by the next one due, so delays do not add up, and the last byte
goes out at size / rate); `GET /stats` answers the requests for the
object so far and when the last one sent its last byte (`time.perf_counter()`, the
system's monotonic clock, comparable across processes). Its own process, so that the
clients a benchmark runs do not hold up its schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

STEP = 64 * 1024


def body(size: int) -> bytes:
    return bytes([0x47]) + bytes(size - 1)


def make_app(rate: float, size: int) -> web.Application:
    """`rate` in bytes per second."""
    data = body(size)
    stats = {"requests": 0, "last_byte_sent": 0.0}

    async def big(request: web.Request) -> web.StreamResponse:
        stats["requests"] += 1
        response = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
        response.content_length = len(data)
        await response.prepare(request)
        started = time.perf_counter()
        for offset in range(0, len(data), STEP):
            due = started + min(offset + STEP, len(data)) / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            await response.write(data[offset : offset + STEP])
        stats["last_byte_sent"] = time.perf_counter()
        return response

    async def report(_: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_get("/big.ts", big)
    app.router.add_get("/stats", report)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="MB/s")
    parser.add_argument("--size-mb", type=float, default=5)
    args = parser.parse_args()
    size = int(args.size_mb * 1024 * 1024)
    app = make_app(args.rate * 1024 * 1024, size)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
