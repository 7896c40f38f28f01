"""Shared parts of the benchmarks: media, nginx, the gateway, an origin, load and timing.

Everything listens on 127.0.0.1. Each benchmark runs the gateway and its anchor on the same
workload in the same run, alternating A, B, B, A, A, B, and prints absolute figures and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
_T = TypeVar("_T")


def ensure_tools() -> None:
    """nginx-light and wrk from Debian, installed when missing (the bench runs as root)."""
    missing = [
        pkg for tool, pkg in (("nginx", "nginx-light"), ("wrk", "wrk")) if not shutil.which(tool)
    ]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
             "-o", "DPkg::Lock::Timeout=300", *missing],
            check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def queued_seconds() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (schedstat(5)'s second
    field): on two cores shared by the load generator, the proxy and the origin, the part
    of a request's time that is nobody's work."""
    waited = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat").read_text().split()[1]
    return int(waited) / 1e9


# sched_setattr(2)'s number, where this knows it.
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


def set_scheduler_slice(nanoseconds: int) -> int:
    """Ask the scheduler (EEVDF, Linux 6.12 and later) for a time slice of `nanoseconds`
    for every thread of this process, 0 for its default; the slice in force afterwards.

    A task with a shorter slice than the one running preempts it when it wakes, so a load
    generator asking for one is not queued behind the servers it measures; with the
    kernel's default (1.4 ms on the 2-core machine measured) it waited behind an origin's or
    a proxy's burst of work.
    """
    number = _SCHED_SETATTR.get(os.uname().machine)
    if number is not None:
        libc = ctypes.CDLL(None, use_errno=True)
        # struct sched_attr (version 1): size, policy SCHED_OTHER, flags, nice, priority,
        # runtime (the slice), deadline, period, utilization clamps.
        attr = struct.pack("IIQiIQQQII", 56, 0, 0, 0, 0, nanoseconds, 0, 0, 0, 0)
        for task in Path("/proc/self/task").iterdir():
            libc.syscall(number, int(task.name), ctypes.create_string_buffer(attr, 56), 0)
    for line in Path("/proc/self/sched").read_text().splitlines():
        if line.startswith("se.slice"):
            return int(line.split(":")[1])
    return 0


def children(pid: int) -> list[int]:
    """Direct children of a process (the gateway's workers, nginx's workers)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of a process and its direct children (nginx's master and workers)."""
    return cpu_seconds(pid) + sum(cpu_seconds(kid) for kid in children(pid))


def pid_of(process: subprocess.Popen[bytes] | None) -> int | None:
    return process.pid if process is not None else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_relay_process(module: str, port: int, upstream: str) -> subprocess.Popen[bytes]:
    """`python -m module --port port --upstream upstream` (a relay of this directory), in a
    process of its own, listening once this returns."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), "--upstream", upstream], cwd=ROOT
    )
    wait_port(port)
    return process


# Upstream host and port -> the factory of the relay's client-side protocol.
RelayProtocols = Callable[[str, int], Callable[[], asyncio.Protocol]]


def relay_main(protocols: RelayProtocols) -> None:
    """The command line of a relay: `--port` to listen on (127.0.0.1), `--upstream
    host:port` to relay to; serves on uvloop until killed."""
    import uvloop

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(protocols(host, int(port)), "127.0.0.1", args.port)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


def make_media(root: Path, seconds: int = 12) -> Path:
    """1280x720 at ~8 Mb/s in 1 s segments: about 1 MB per segment, as CDNs serve."""
    out = root / "vod"
    if (out / "index.m3u8").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "8M", "-maxrate", "8M",
         "-bufsize", "8M", "-g", "25", "-f", "hls", "-hls_time", "1",
         "-hls_playlist_type", "vod", "-hls_segment_filename", str(out / "seg_%03d.ts"),
         str(out / "index.m3u8")],
        check=True,
    )  # fmt: skip
    # A long VOD playlist for the playlist workload.
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i in range(1000):
        lines += ["#EXTINF:1.000000,", f"seg_{i % seconds:03d}.ts"]
    (out / "long.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
    return out


def make_long_mp4(minutes: int, *, faststart: bool = True) -> Path:
    """A long progressive MP4 (426x240 H.264 + AAC, keyframes every 2 s), made once and kept
    under the temp dir between runs: an hour takes about a minute to encode."""
    name = f"hls-gateway-bench-{minutes}min{'' if faststart else '-moovlast'}.mp4"
    out = Path(tempfile.gettempdir()) / name
    if out.exists():
        return out
    seconds = minutes * 60
    partial = out.with_suffix(".partial.mp4")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=426x240:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-b:v", "300k",
         "-c:a", "aac", "-b:a", "64k",
         *(["-movflags", "+faststart"] if faststart else []), str(partial)],
        check=True,
    )  # fmt: skip
    partial.rename(out)
    return out


class Nginx:
    """nginx from a private prefix: static files, or proxy_cache in front of an origin."""

    def __init__(self, work: Path, port: int) -> None:
        self.work, self.port = work, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, server_block: str) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        (self.work / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {self.work}/nginx.pid;\n"
            f"error_log {self.work}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
            "  keepalive_requests 1000000;\n  default_type application/octet-stream;\n"
            f"  client_body_temp_path {self.work}/body;\n  proxy_temp_path {self.work}/proxy;\n"
            f"  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}\n"
            f"  proxy_cache_path {self.work}/edge keys_zone=edge:10m max_size=1g;\n"
            f"  server {{\n    listen 127.0.0.1:{self.port};\n{server_block}\n  }}\n}}\n"
        )
        self.process = subprocess.Popen(
            [
                "nginx",
                "-p",
                str(self.work),
                "-c",
                str(self.work / "nginx.conf"),
                "-g",
                "daemon off;",
            ]
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


def static_nginx(work: Path, media: Path, *, cold_names: bool = False) -> Nginx:
    """nginx serving the media directory at /vod/, the anchor for every hit workload. With
    `cold_names`, any `cold_<n>_<name>` is served as `<name>` (as `SlowOrigin` does), so a
    workload of misses names a new object on every request; off by default, so that the
    anchor evaluates no regex per request."""
    cold = (
        f"\n    location ~ ^/vod/cold_[0-9]+_(?<real>.+)$ {{ alias {media}/$real; }}"
        if cold_names
        else ""
    )
    nginx = Nginx(work / "nginx", free_port())
    nginx.start(f"    location /vod/ {{ alias {media}/; }}{cold}")
    return nginx


@dataclass
class Gateway:
    port: int
    cache_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(
        self, *, profile_to: Path | None = None, entry: str = "gateway.cli", **settings: str
    ) -> None:
        """Run `hls-gateway serve` (or `entry`'s `serve`); under cProfile writing to
        `profile_to` when given."""
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        self.env.update(
            GATEWAY_PORT=str(self.port), GATEWAY_CACHE_DIR=str(self.cache_dir),
            GATEWAY_SECRET="bench-secret-" + "x" * 24, GATEWAY_ALLOW_PRIVATE_UPSTREAMS="true",
            GATEWAY_ACCESS_LOG="off", GATEWAY_LOG_LEVEL="WARNING",
            **{f"GATEWAY_{k.upper()}": v for k, v in settings.items()},
        )  # fmt: skip
        profiler = ["-m", "cProfile", "-o", str(profile_to)] if profile_to else []
        self.process = subprocess.Popen(
            [sys.executable, *profiler, "-m", entry, "serve"], env=self.env, cwd=ROOT
        )
        wait_port(self.port)

    def mint(self, upstream: str, *options: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "url", upstream, *options],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()  # GATEWAY_PORT is set, so the link names this instance

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hls-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def wrk(
    url: str,
    *,
    threads: int = 1,
    connections: int = 32,
    seconds: int = 5,
    timeout: int = 10,
    script: Path | None = None,
    server_pids: Sequence[int] = (),
) -> dict[str, float]:
    """Requests per second, latency percentiles (ms), non-2xx answers, socket errors and
    bytes per response from `wrk --latency` (with a Lua `script` when given). The timeout is
    longer than wrk's 2 s default, which drops slower requests without counting them and so
    hides slow servers. Also the CPU wrk itself used, as a share of one core per thread (near
    1.0, the load generator is the limit and not the server), and, given the server's
    processes, their trees' CPU per request."""
    scripted = ["-s", str(script)] if script is not None else []
    server_before = sum(map(tree_cpu_seconds, server_pids))
    client_before = os.times()
    started = time.perf_counter()
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout}s",
         "--latency", *scripted, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result = {"rps": float(match.group(1)) if match else 0.0}
    for pct in ("50", "90", "99"):
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\b", out, re.MULTILINE)
        if found:
            value, unit = float(found.group(1)), found.group(2)
            result[f"p{pct}_ms"] = value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(non2xx.group(1)) if non2xx else 0.0
    # Bytes per response: a server answering fast with short bodies would look fast.
    read = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)([KMGT]?B) read", out)
    if read and int(read.group(1)):
        scale = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}[read.group(3)]
        result["bytes_per_response"] = float(read.group(2)) * scale / int(read.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = float(sum(map(int, sock.groups()))) if sock else 0.0
    elapsed = time.perf_counter() - started
    client = os.times()
    client_seconds = (client.children_user - client_before.children_user) + (
        client.children_system - client_before.children_system
    )
    result["client_cpu_share"] = client_seconds / elapsed / threads
    if server_pids and result["rps"]:
        server_seconds = sum(map(tree_cpu_seconds, server_pids)) - server_before
        result["server_cpu_us"] = server_seconds / (result["rps"] * seconds) * 1e6
    return result


def wrk_options(connections: int = 32) -> argparse.ArgumentParser:
    """The options every load benchmark takes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    # Three, so that the median is a run's own figure: with two it is their mean, and one
    # slow run drags it (the same RAM hit's CPU per request doubled between 3 s runs here).
    parser.add_argument("--rounds", type=int, default=3, help="alternations (at least 2)")
    parser.add_argument("--connections", type=int, default=connections)
    return parser


def alternate(runs: dict[str, object], rounds: int = 2) -> dict[str, list[dict[str, float]]]:
    """Run each named workload `rounds` times, interleaved, every other round in reverse
    order: A, B, C, then C, B, A, then A, B, C. A machine that speeds up or slows down
    during the run then favours neither the first nor the last workload of a round."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for round_number in range(rounds):
        for name, run in in_turn(list(runs.items()), round_number):
            results[name].append(run())  # type: ignore[operator]
    return results


def in_turn(items: list[_T], round_number: int) -> list[_T]:
    """`items` in their order in even rounds and reversed in odd ones (see `alternate`)."""
    return items if round_number % 2 == 0 else items[::-1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    title: str, results: dict[str, list[dict[str, float]]], metric: str, baseline: str
) -> dict[str, object]:
    """Print a table of each run and the median, with the ratio to `baseline`."""
    base = median([r[metric] for r in results[baseline]])
    print(f"\n## {title}\n")
    print(f"| server | {metric} (each run) | median | ratio to {baseline} |")
    print("|---|---|---|---|")
    summary: dict[str, object] = {}
    for name, runs in results.items():
        values = [r[metric] for r in runs]
        med = median(values)
        ratio = med / base if base else float("nan")
        summary[name] = {"runs": runs, "median": med, "ratio": ratio}
        shown = ", ".join(f"{v:,.2f}" if v < 100 else f"{v:,.0f}" for v in values)
        print(f"| {name} | {shown} | {med:,.2f} | {ratio:.2f}× |")
    return summary


def save(name: str, data: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2, default=str))
    return path


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d"),
    }


async def ttfb(session: aiohttp.ClientSession, url: str) -> tuple[float, str, int]:
    """Seconds to the first body byte, the X-Cache state, and the body size."""
    started = time.perf_counter()
    async with session.get(url) as response:
        first = await response.content.readany()
        elapsed = time.perf_counter() - started
        rest = await response.read()
        return elapsed, response.headers.get("X-Cache", "-"), len(first) + len(rest)


class SlowOrigin:
    """An aiohttp origin that waits `latency` before answering, like a far-away CDN."""

    def __init__(self, root: Path, latency: float) -> None:
        self.root, self.latency = root, latency
        self.requests = 0
        self.base = ""

    async def start(self) -> web.AppRunner:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests += 1
            await asyncio.sleep(self.latency)
            name = request.match_info["name"]
            # Any /seg_<n>.ts is served from an existing segment, so every name is cold.
            real = re.sub(r"^cold_\d+_", "", name)
            path = self.root / real
            if not path.is_file():
                return web.Response(status=404)
            return web.Response(
                body=path.read_bytes(),
                content_type="video/mp2t"
                if name.endswith(".ts")
                else "application/vnd.apple.mpegurl",
            )

        app = web.Application()
        app.router.add_get("/vod/{name}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.base = f"http://127.0.0.1:{port}"
        return runner
