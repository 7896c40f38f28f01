"""The lane's own work for an answer from memory: microseconds of Python per request.

python -m bench.lane_answer [--answers 20000]

Starts an nginx origin and a gateway app in this process, warms a cached 1,000-segment
playlist and a segment in the RAM tier through real requests, then times
`FastLane.take` (parse the request bytes, find the answer, build its head) on the same
request bytes many times over, without the socket write. The hot map that vouches for a
segment lasts two seconds, so each workload is timed in short rounds after a fresh request.
A third workload is the X-Accel answer to nginx in front (`nginx/hls-gateway.conf`): a
second app with `GATEWAY_ACCEL_REDIRECT_PREFIX`, asked with the request lines nginx sends,
whose `X-Request-Id` is new on every request, so no two requests are the same bytes.
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


# What nginx/hls-gateway.conf sends for a client that sent only its Host (as wrk does).
_FROM_NGINX = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 127.0.0.1\r\n"
    "X-Forwarded-Proto: http\r\nX-Request-Id: {request_id:032x}\r\n\r\n"
)


async def measure(origin: str, cache_dir: str, answers: int) -> dict[str, float]:
    results = await measure_app(origin, cache_dir, answers, accel=False)
    results |= await measure_app(origin, cache_dir + "-accel", answers, accel=True)
    return results


async def measure_app(
    origin: str, cache_dir: str, answers: int, *, accel: bool
) -> dict[str, float]:
    settings = Settings(
        secret="bench-secret-" + "x" * 24,
        allow_private_upstreams=True,
        cache_dir=cache_dir,
        prefetch_segments=0,
        accel_redirect_prefix="/_cache/" if accel else None,
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
            workloads = (
                (("X-Accel answer to nginx", "seg_003.ts"),)
                if accel
                else (("cached playlist", "long.m3u8"), ("RAM hit", "seg_003.ts"))
            )
            for label, name in workloads:
                path = links.mint(f"{origin}/vod/{name}", (), None)[len(links.public_base) :]
                if accel:
                    requests = [
                        _FROM_NGINX.format(path=path, request_id=n).encode() for n in range(_ROUND)
                    ]
                else:
                    same = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
                    requests = [same] * _ROUND
                samples = []
                for _ in range(max(1, answers // _ROUND)):
                    for _ in range(3):  # the miss, then hits until the RAM tier holds it
                        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                            await response.read()
                    reply = lane.take(requests[0], big_bodies=True)
                    assert isinstance(reply, Reply), reply
                    assert accel == ("X-Accel-Redirect" in reply.answer.headers)
                    started = time.perf_counter()
                    for request in requests:
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
