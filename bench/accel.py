"""Behind nginx: the shipped nginx/hls-gateway.conf in front of the gateway, which answers
disk hits with X-Accel-Redirect into an `internal` location aliased to its cache directory.

    python -m bench.accel [--seconds 5] [--connections 32] [--rounds 3]

Segment: nginx sending the file itself (static, the anchor) against the same nginx build
in front of the gateway (one proxied request to the gateway for headers, then nginx sends
the cached file), reaching the gateway over its unix socket as shipped, and over loopback
TCP; the target is at least 0.95x nginx static. The gateway alone (its RAM
tier, no nginx) is shown for reference, and so is the shipped front in front of a backend
written in C: a second nginx that answers every request with the gateway's own
X-Accel-Redirect headers (`return 200`), about 9 µs of CPU per answer. That row is the
config's ceiling: what is left between it and the gateway's row is the gateway's CPU per
answer, which shares the two cores with nginx and the load generator.

The segment rows are then run again with each serving side held to half a core
(bench.cpu_quota): nginx static alone, the front nginx and the gateway together under one
quota, the front nginx and the C backend together. There the serving side, not wrk or the
two cores' contention, is the limit, and the ratio is what a hit behind nginx costs in all
against what nginx alone spends on it.

Playlist: long.m3u8 as a raw file from nginx, the gateway's rewritten copy through the
front nginx (nginx's proxy_cache, as shipped), and from the gateway directly. One nginx
worker each, as in the other benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
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
    PeerNginx,
    flag_errors,
    get,
    load_note,
    print_cpu,
    print_latency,
    render_front_site,
)

SEGMENT = "seg_003.ts"
TARGET = 0.95


def check_front_segment(url: str, expected: bytes) -> None:
    """Sent by nginx from the cache dir: a HIT with the right bytes and no leaked header."""
    status, body, headers = get(url)
    if status != 200 or body != expected:
        raise RuntimeError(f"front segment {url}: {status}, {len(body)} bytes")
    if headers.get("X-Cache") != "HIT" or "X-Accel-Redirect" in headers:
        raise RuntimeError(f"front segment not an X-Accel hit: {headers}")


def main() -> None:
    parser = wrk_options()
    args = parser.parse_args()
    ensure_tools()
    before = load_note("before")
    with workdir() as work, contextlib.ExitStack() as stack:
        media = make_media(work)
        static = PeerNginx(work / "static", free_port())
        accel = Gateway(free_port(), work / "cache-accel")
        direct = Gateway(free_port(), work / "cache-direct")
        front = PeerNginx(work / "front", free_port())
        front_tcp = PeerNginx(work / "front-tcp", free_port())
        backend_c = PeerNginx(work / "backend-c", free_port())
        front_c = PeerNginx(work / "front-c", free_port())
        # Registered before anything starts, so a failed start still stops the rest.
        for server in (static, accel, direct, front, front_tcp, backend_c, front_c):
            stack.callback(server.stop)
        static.start(static.static(media))
        socket = work / "gateway.sock"
        accel.start(accel_redirect_prefix="/_cache/", unix_socket=str(socket))
        direct.start()
        front.start(front_site(front, accel, f"unix:{socket}"))
        front_tcp.start(front_site(front_tcp, accel, f"127.0.0.1:{accel.port}"))
        servers = Servers(static, front, front_tcp, accel, direct, front_c, backend_c)
        backend_socket = work / "backend-c.sock"
        backend_c.start(c_backend_site(backend_c, backend_socket, servers))
        front_c.start(front_site(front_c, accel, f"unix:{backend_socket}"))
        data = bench(servers, (media / SEGMENT).read_bytes(), args)
        data["load_before"] = before
        print(f"\nresults: {save('accel', data)}")


def front_site(front: PeerNginx, gateway: Gateway, backend: str) -> str:
    """The shipped site, with this run's ports and paths."""
    return render_front_site([backend], front.port, gateway.cache_dir, front.work)


def c_backend_site(backend: PeerNginx, socket: Path, servers: Servers) -> str:
    """An nginx server block that answers every request as the gateway answers a hit on
    SEGMENT behind nginx: its X-Accel-Redirect and the headers that go with it."""
    link = servers.accel.mint(f"{servers.origin}/{SEGMENT}")
    get(link)  # the miss, which fills the cache
    _, _, headers = get(link)
    if "X-Accel-Redirect" not in headers:
        raise RuntimeError(f"the gateway's hit has no X-Accel-Redirect: {headers}")
    lines = "".join(
        f"      add_header {name} '{headers[name]}';\n"
        for name in ("X-Accel-Redirect", "Cache-Control", "X-Cache")
    )
    return (
        f"  server {{\n    listen {backend.port};\n    listen unix:{socket};\n"
        f"    location / {{\n{lines}      default_type {headers['Content-Type']};\n"
        "      return 200;\n    }\n  }\n"
    )


@dataclass
class Servers:
    static: PeerNginx
    front: PeerNginx
    front_tcp: PeerNginx
    accel: Gateway
    direct: Gateway
    front_c: PeerNginx
    backend_c: PeerNginx

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.static.port}/vod"

    def through(self, front: PeerNginx, name: str) -> str:
        """The accel gateway's link for `name`, asked of a front nginx."""
        link = self.accel.mint(f"{self.origin}/{name}")
        return f"http://127.0.0.1:{front.port}" + link.removeprefix(self.accel.base)


def warm(servers: Servers, expected: bytes) -> dict[str, str]:
    """Every link benchmarked, checked and warm: the gateway's disk and RAM, nginx's cache."""
    links = {
        "front segment": servers.through(servers.front, SEGMENT),
        "front segment, tcp": servers.through(servers.front_tcp, SEGMENT),
        "front segment, C backend": servers.through(servers.front_c, SEGMENT),
        "front playlist": servers.through(servers.front, "long.m3u8"),
        "direct segment": servers.direct.mint(f"{servers.origin}/{SEGMENT}"),
        "direct playlist": servers.direct.mint(f"{servers.origin}/long.m3u8"),
    }
    get(links["front segment"])  # the miss: filled into the gateway's cache dir
    check_front_segment(links["front segment"], expected)
    check_front_segment(links["front segment, tcp"], expected)
    check_front_segment(links["front segment, C backend"], expected)
    for name in ("direct segment", "direct segment", "front playlist", "direct playlist"):
        status, _, _ = get(links[name])
        if status != 200:
            raise RuntimeError(f"warming {links[name]}: {status}")
    _, _, headers = get(links["front playlist"])
    print(f"front playlist: X-Edge-Cache {headers.get('X-Edge-Cache')}")
    return links


def bench(servers: Servers, expected: bytes, args: argparse.Namespace) -> dict[str, object]:
    links = warm(servers, expected)

    def run(url: str) -> Callable[[], dict[str, float]]:
        return lambda: wrk(url, connections=args.connections, seconds=args.seconds)

    segments = alternate(
        {
            "nginx static": run(f"{servers.origin}/{SEGMENT}"),
            "nginx → gateway X-Accel hit": run(links["front segment"]),
            "same over loopback TCP": run(links["front segment, tcp"]),
            "nginx → C backend, same answer": run(links["front segment, C backend"]),
            "gateway alone, RAM hit": run(links["direct segment"]),
        },
        args.rounds,
    )
    segments_held = held_segments(servers, links, args)
    playlists = alternate(
        {
            "nginx raw playlist": run(f"{servers.origin}/long.m3u8"),
            "nginx → gateway playlist": run(links["front playlist"]),
            "gateway alone, playlist": run(links["direct playlist"]),
        },
        args.rounds,
    )
    print(
        f"\nsegment 1.1 MB, playlist 1,000 segments, one nginx worker; "
        f"wrk -t1 -c{args.connections} -d{args.seconds}s --timeout 10s"
    )
    data: dict[str, object] = {
        "segments": report("Warm segment behind nginx (req/s)", segments, "rps", "nginx static"),
        "playlists": report(
            "Playlist behind nginx (req/s)", playlists, "rps", "nginx raw playlist"
        ),
    }
    flag_errors(segments)
    flag_errors(playlists)
    print_latency(segments, playlists)
    if segments_held:
        title = f"Warm segment behind nginx, each serving side held to {HELD_CORES:g} of a core"
        data["segments_held"] = report(f"{title} (req/s)", segments_held, "rps", "nginx static")
        print_cpu(segments_held)
        flag_errors(segments_held)
    ratios = {name: row["ratio"] for name, row in data["segments"].items()}  # type: ignore[union-attr]
    ratio = ratios["nginx → gateway X-Accel hit"]
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"\nX-Accel hit / nginx static = {ratio:.2f}× (target ≥ {TARGET}: {verdict})")
    ceiling = ratios["nginx → C backend, same answer"]
    print(
        f"the same front over a C backend: {ceiling:.2f}×; "
        f"the gateway reaches {ratio / ceiling:.2f} of it"
    )
    return data


def held_segments(
    servers: Servers, links: dict[str, str], args: argparse.Namespace
) -> dict[str, list[dict[str, float]]]:
    """The segment rows with each serving side under one CPU quota: nginx static alone, the
    front and the gateway together, the front and the C backend together."""
    sides = {
        "nginx static": (f"{servers.origin}/{SEGMENT}", [servers.static]),
        "nginx → gateway X-Accel hit": (links["front segment"], [servers.front, servers.accel]),
        "nginx → C backend, same answer": (
            links["front segment, C backend"], [servers.front_c, servers.backend_c]),
    }  # fmt: skip
    return held_rounds(
        {
            name: (url, [pid for server in side if (pid := pid_of(server.process)) is not None])
            for name, (url, side) in sides.items()
        },
        args,
    )


if __name__ == "__main__":
    main()
