"""Cache hits and cached playlists: the gateway against nginx serving the same files.

python -m bench.hits [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

from bench.common import (
    Gateway,
    alternate,
    ensure_tools,
    free_port,
    make_media,
    report,
    save,
    static_nginx,
    workdir,
    wrk,
    wrk_options,
)


def main() -> None:
    parser = wrk_options()
    args = parser.parse_args()
    ensure_tools()
    with workdir() as work:
        media = make_media(work)
        nginx = static_nginx(work, media)
        gateway = Gateway(free_port(), work / "cache")
        gateway.start()
        disk_only = Gateway(free_port(), work / "cache-disk")
        disk_only.start(cache_memory_bytes="0")
        try:
            origin = f"http://127.0.0.1:{nginx.port}/vod"
            segment = gateway.mint(f"{origin}/seg_003.ts")
            playlist = gateway.mint(f"{origin}/long.m3u8")
            disk_segment = disk_only.mint(f"{origin}/seg_003.ts")
            for url in (segment, playlist, disk_segment):  # warm: fill, then promote to RAM
                for _ in range(3):
                    urllib.request.urlopen(url).read()
            size = len(urllib.request.urlopen(segment).read())

            def run(url: str) -> Callable[[], dict[str, float]]:
                return lambda: wrk(url, connections=args.connections, seconds=args.seconds)

            hits = alternate(
                {
                    "nginx static": run(f"{origin}/seg_003.ts"),
                    "gateway RAM hit": run(segment),
                    "gateway disk hit": run(disk_segment),
                },
                args.rounds,
            )
            playlists = alternate(
                {
                    "nginx raw playlist": run(f"{origin}/long.m3u8"),
                    "gateway rewritten playlist": run(playlist),
                },
                args.rounds,
            )
            print(
                f"\nsegment {size:,} bytes; playlist 1,000 segments; wrk -t1 -c{args.connections} -d{args.seconds}s"
            )
            data = {
                "segment_bytes": size,
                "hits": report("Segment cache hits (req/s)", hits, "rps", "nginx static"),
                "playlists": report(
                    "Cached VOD playlist (req/s)", playlists, "rps", "nginx raw playlist"
                ),
            }
            print(f"\nresults: {save('hits', data)}")
        finally:
            gateway.stop()
            disk_only.stop()
            nginx.stop()


if __name__ == "__main__":
    main()
