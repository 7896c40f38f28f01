"""The gateway against the peer proxies: HLS-Proxy (Node.js, npm) and mediaflow-proxy
(Python, PyPI), with nginx static as the reference; same run, same wrk, A B C D D C B A A B C D.

    python -m bench.anchors [--seconds 5] [--connections 32] [--rounds 3]

Workloads: one hot 1.1 MB segment, each proxy's cache hit (HLS-Proxy `--prefetch
--cache-storage memory`: RAM; mediaflow: its Redis segment cache, db 14; the gateway: its
RAM tier), and the 1,000-segment long.m3u8 rewritten (the peers keep no rewritten copy:
they fetch and rewrite on every request). The hot segment is then asked again of nginx,
the gateway and HLS-Proxy with each server held to half a core (bench.cpu_quota): there
the server, not wrk, is the limit, and req/s is each server's own cost per hit. Each
segment link benchmarked is the one the proxy itself wrote into a playlist. The peers are
installed once under $HLS_BENCH_TOOLS (default /tmp/hls-bench-tools); a peer that cannot be
installed (no network) is skipped with one line and the rest still runs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    Gateway,
    alternate,
    ensure_tools,
    free_port,
    make_media,
    pid_of,
    report,
    save,
    workdir,
    wrk,
    wrk_options,
)
from bench.cpu_quota import HELD_CORES, held_rounds
from bench.peers import (
    HlsProxy,
    MediaFlow,
    PeerNginx,
    flag_errors,
    get,
    load_note,
    print_cpu,
    print_latency,
    print_ratios,
    written_uri,
)

SEGMENT = "seg_003.ts"
HELD = ("nginx static", "gateway RAM hit", "HLS-Proxy cache hit")


def check(name: str, url: str, expected: bytes | None = None) -> bytes:
    """Fail loudly before benchmarking a link that does not answer 200 with the right
    bytes: a fast wrong answer would look like a fast server."""
    status, body, _ = get(url)
    if status != 200 or (expected is not None and body != expected):
        raise RuntimeError(f"{name}: {url} answered {status} with {len(body)} bytes")
    return body


Started = tuple[str, str, int | None]


def start_hls_proxy(work: Path, origin: str, stack: contextlib.ExitStack) -> Started | None:
    """The segment link HLS-Proxy wrote, its long.m3u8 link and its process, or None when
    not installed."""
    proxy = HlsProxy(free_port(), work / "hls-proxy.log")
    problem = proxy.install()
    if problem:
        print(f"SKIP HLS-Proxy: {problem}")
        return None
    stack.callback(proxy.stop)
    proxy.start()
    # The playlist passing through is what makes HLS-Proxy prefetch its segments into RAM.
    playlist = check("HLS-Proxy", proxy.url(f"{origin}/index.m3u8"))
    encoded = base64.b64encode(f"{origin}/{SEGMENT}".encode()).decode()
    segment = written_uri(playlist, encoded)
    print(f"HLS-Proxy writes segment links as {segment}")
    return segment, proxy.url(f"{origin}/long.m3u8"), pid_of(proxy.process)


def start_mediaflow(work: Path, origin: str, stack: contextlib.ExitStack) -> Started | None:
    """The segment link mediaflow wrote, its long.m3u8 link and its process, or None when
    not installed."""
    proxy = MediaFlow(free_port(), work / "mediaflow.log")
    problem = proxy.install()
    if problem:
        print(f"SKIP mediaflow-proxy: {problem}")
        return None
    stack.callback(proxy.stop)
    proxy.start()
    playlist = check("mediaflow-proxy", proxy.manifest_url(f"{origin}/index.m3u8"))
    segment = written_uri(playlist, urllib.parse.quote(f"/{SEGMENT}", safe=""))
    print(f"mediaflow-proxy writes segment links as {segment}")
    return segment, proxy.manifest_url(f"{origin}/long.m3u8"), pid_of(proxy.process)


def main() -> None:
    parser = wrk_options()
    args = parser.parse_args()
    ensure_tools()
    before = load_note("before")
    with workdir() as work, contextlib.ExitStack() as stack:
        media = make_media(work)
        expected = (media / SEGMENT).read_bytes()
        nginx = PeerNginx(work / "nginx", free_port())
        stack.callback(nginx.stop)  # registered first, so a failed start still cleans up
        nginx.start(nginx.static(media))
        origin = f"http://127.0.0.1:{nginx.port}/vod"
        gateway = Gateway(free_port(), work / "cache")
        stack.callback(gateway.stop)
        gateway.start(cache_memory_bytes="64MiB")
        segments = {"nginx static": f"{origin}/{SEGMENT}"}
        playlists = {"nginx raw playlist": f"{origin}/long.m3u8"}
        segments["gateway RAM hit"] = gateway.mint(f"{origin}/{SEGMENT}")
        playlists["gateway rewritten"] = gateway.mint(f"{origin}/long.m3u8")
        pids = {
            "nginx static": pid_of(nginx.process),
            "nginx raw playlist": pid_of(nginx.process),
            "gateway RAM hit": pid_of(gateway.process),
            "gateway rewritten": pid_of(gateway.process),
        }
        for name, starter in (("HLS-Proxy", start_hls_proxy), ("mediaflow-proxy", start_mediaflow)):
            started = starter(work, origin, stack)
            if started is not None:
                segment, playlist, pid = started
                segments[f"{name} cache hit"], playlists[f"{name} rewritten"] = segment, playlist
                pids[f"{name} cache hit"] = pids[f"{name} rewritten"] = pid
        # Warm: gateway fill then promotion to RAM (second hit), peers' caches filled.
        for name, url in segments.items():
            for _ in range(3):
                check(name, url, expected)
        for name, url in playlists.items():
            for _ in range(2):
                check(name, url)
        data = run_workloads(segments, playlists, pids, args)
        data["load_before"] = before
        print(f"\nresults: {save('anchors', data)}")


def run_workloads(
    segments: dict[str, str],
    playlists: dict[str, str],
    pids: dict[str, int | None],
    args: argparse.Namespace,
) -> dict[str, object]:
    def run(url: str, pid: int | None) -> Callable[[], dict[str, float]]:
        def measure() -> dict[str, float]:
            pids = [pid] if pid is not None else []
            result = wrk(url, connections=args.connections, seconds=args.seconds, server_pids=pids)
            if result["rps"] == 0 and not result.get("socket_errors"):
                # Not one answer finished within the run at this concurrency (mediaflow's
                # 1,000-segment rewrite on a slow day): one connection for three times as
                # long instead, so the figure is a rate and not a zero.
                result = wrk(url, connections=1, seconds=3 * args.seconds)
                result["connections"] = 1
                print(
                    f"(no answer within {args.seconds}s at -c{args.connections}: {url} "
                    f"measured with -c1 for {3 * args.seconds}s)"
                )
            return result

        return measure

    hits = alternate({name: run(url, pids[name]) for name, url in segments.items()}, args.rounds)
    hits_held = held_rounds(
        {name: (segments[name], [pid]) for name in HELD if (pid := pids.get(name)) is not None},
        args,
    )
    lists = alternate({name: run(url, pids[name]) for name, url in playlists.items()}, args.rounds)
    print(
        "\nsegment 1.1 MB, playlist 1,000 segments; "
        f"wrk -t1 -c{args.connections} -d{args.seconds}s --timeout 10s"
    )
    data: dict[str, object] = {"links": {"segments": segments, "playlists": playlists}}
    data["hits"] = report("Hot segment hit (req/s)", hits, "rps", "nginx static")
    print_ratios(data["hits"], "gateway RAM hit")  # type: ignore[arg-type]
    print_cpu(hits)
    flag_errors(hits)
    if hits_held:
        title = f"Hot segment hit, each server held to {HELD_CORES:g} of a core (req/s)"
        data["hits_held"] = report(title, hits_held, "rps", "nginx static")
        print_ratios(data["hits_held"], "gateway RAM hit")  # type: ignore[arg-type]
        print_cpu(hits_held)
        flag_errors(hits_held)
    data["playlists"] = report("1,000-segment playlist (req/s)", lists, "rps", "nginx raw playlist")
    print_ratios(data["playlists"], "gateway rewritten")  # type: ignore[arg-type]
    print_cpu(lists)
    flag_errors(lists)
    print_latency(hits, lists)
    return data


if __name__ == "__main__":
    main()
