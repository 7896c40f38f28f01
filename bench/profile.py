"""Where a request's time goes: the gateway under cProfile while wrk drives one workload.

python -m bench.profile [--workload playlist|ram|disk|miss|accel] [--seconds 5]

Prints the share of profiled time spent in the gateway's own code, in aiohttp, in the event
loop and in the kernel calls that move the bytes, and the top functions. cProfile slows
Python code several-fold, so the shares matter, not the absolute figures. `miss` asks for a
name nobody asked for before on every request (`cold_<n>_seg_003.ts`, which the origin
nginx serves as `seg_003.ts`), so each one is a fill: upstream request, temp file, commit.
`accel` is a disk hit answered with `X-Accel-Redirect` (the gateway's share of a hit behind
the shipped nginx), asked of the gateway directly.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import urllib.request
from collections import defaultdict
from pathlib import Path

from bench.common import (
    ROOT,
    Gateway,
    ensure_tools,
    free_port,
    make_media,
    static_nginx,
    workdir,
    wrk,
)

_GROUPS = (
    ("gateway + playlists (this project)", (f"{ROOT}/gateway/", f"{ROOT}/playlists/")),
    ("aiohttp (HTTP parsing, responses, writer)", ("/aiohttp/",)),
    ("asyncio / uvloop (event loop)", ("/asyncio/", "uvloop")),
    ("multidict, yarl, cachetools, prometheus", ("/multidict/", "/yarl/", "/cachetools/", "/prometheus_client/")),
)  # fmt: skip


def group_of(filename: str, function: str) -> str:
    for name, needles in _GROUPS:
        if any(needle in filename for needle in needles):
            return name
    if filename == "~":
        if any(call in function for call in ("send", "recv", "sendfile", "pread", "mmap")):
            return "socket and file calls (kernel)"
        if "poll" in function or "select" in function:
            return "waiting for events (epoll)"
        return "other built-ins"
    return "other Python"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--workload", choices=("playlist", "ram", "disk", "miss", "accel"), default="playlist"
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    args = parser.parse_args()
    ensure_tools()
    with workdir() as work:
        media = make_media(work)
        nginx = static_nginx(work, media, cold_names=args.workload == "miss")
        gateway = Gateway(free_port(), work / "cache")
        settings = {"event_loop": args.loop, "prefetch_segments": "0"}
        if args.workload == "disk":
            settings["cache_memory_bytes"] = "0"
        if args.workload == "accel":
            settings["accel_redirect_prefix"] = "/_cache/"
        out = work / "gateway.prof"
        gateway.start(profile_to=out, **settings)
        try:
            origin = f"http://127.0.0.1:{nginx.port}/vod"
            name = "long.m3u8" if args.workload == "playlist" else "seg_003.ts"
            url = gateway.mint(f"{origin}/{name}")
            for _ in range(3):
                urllib.request.urlopen(url).read()
            script = cold_names(work, url) if args.workload == "miss" else None
            result = wrk(url, seconds=args.seconds, script=script)
        finally:
            assert gateway.process is not None
            gateway.process.send_signal(signal.SIGINT)  # a clean exit writes the profile
            gateway.process.wait(30)
            nginx.stop()
        report(out, result["rps"], args)


def cold_names(work: Path, url: str) -> Path:
    """A wrk script asking for a new name in the same directory on every request."""
    directory = "/" + url.split("/", 3)[3].rsplit("/", 1)[0]
    script = work / "cold.lua"
    script.write_text(
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        f'  return wrk.format("GET", "{directory}/cold_" .. n .. "_seg_003.ts")\n'
        "end\n"
    )
    return script


def report(path: os.PathLike[str], rps: float, args: argparse.Namespace) -> None:
    stats = pstats.Stats(str(path))
    shares: dict[str, float] = defaultdict(float)
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        shares[group_of(filename, function)] += tottime
    idle = shares.pop("waiting for events (epoll)", 0.0)
    total = sum(shares.values())
    print(
        f"\n## Profile: {args.workload} workload, {args.loop} loop, {rps:,.0f} req/s under cProfile\n"
    )
    print(f"(time blocked in epoll, left out below: {idle:.1f} s)\n")
    print("| where | share of busy profiled time |\n|---|---|")
    for name, seconds in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"| {name} | {seconds / total:.0%} |")
    print("\nTop functions by own time:\n")
    stats.sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
