"""The lane's own work for an answer from memory: microseconds of Python per request.

python -m bench.lane_answer [--answers 20000]

Starts an nginx origin and a gateway app in this process, warms a cached 1,000-segment
playlist and a segment in the RAM tier through real requests, then times
`FastLane.take` (parse the request bytes, find the answer, build its head) on the same
request bytes many times over, without the socket write. The hot map that vouches for a
segment lasts two seconds, so each workload is timed in short rounds after a fresh request.
"""

from __future__ import annotations

import argparse
import statistics
import time

import aiohttp
import uvloop
from aiohttp import web

from bench.common import make_media, save, static_nginx, workdir
from gateway.app import GATEWAY, create_app
from gateway.fast_lane import Reply
from gateway.lane_connection import FAST_LANE, GatewayRunner
from gateway.settings import Settings

_ROUND = 5_000  # answers per round, well inside the hot map's two seconds


async def measure(origin: str, cache_dir: str, answers: int) -> dict[str, float]:
    settings = Settings(
        secret="bench-secret-" + "x" * 24,
        allow_private_upstreams=True,
        cache_dir=cache_dir,
        prefetch_segments=0,
    )
    app = create_app(settings)
    runner = GatewayRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    links = app[GATEWAY].links
    lane = app[FAST_LANE]
    results = {}
    try:
        async with aiohttp.ClientSession() as session:
            for label, name in (("cached playlist", "long.m3u8"), ("RAM hit", "seg_003.ts")):
                path = links.mint(f"{origin}/vod/{name}", (), None)[len(links.public_base) :]
                request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
                samples = []
                for _ in range(max(1, answers // _ROUND)):
                    for _ in range(3):  # the miss, then hits until the RAM tier holds it
                        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                            await response.read()
                    assert isinstance(lane.take(request, big_bodies=True), Reply)
                    started = time.perf_counter()
                    for _ in range(_ROUND):
                        lane.take(request, big_bodies=True)
                    samples.append((time.perf_counter() - started) / _ROUND * 1e6)
                results[label] = statistics.median(samples)
    finally:
        await runner.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=20_000)
    args = parser.parse_args()
    with workdir() as work:
        media = make_media(work)
        nginx = static_nginx(work, media)
        try:
            origin = f"http://127.0.0.1:{nginx.port}"
            results = uvloop.run(measure(origin, str(work / "cache"), args.answers))
        finally:
            nginx.stop()
    print("\n## The lane's work per answer from memory (median of rounds)\n")
    print("| answer | µs of Python |\n|---|---|")
    for label, micros in results.items():
        print(f"| {label} | {micros:.2f} |")
    print(f"results: {save('lane_answer', results)}")


if __name__ == "__main__":
    main()
