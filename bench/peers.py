"""Helpers for the peer benchmarks (anchors, memory, scaling, accel) that common.py lacks:
wrk with threads and a timeout, nginx with N workers and a whole http block, process RSS,
and the two peer proxies (HLS-Proxy from npm, mediaflow-proxy from PyPI) in a tools dir.

Everything listens on, and talks to, 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bench.common import children, median, wait_port
from tests.support.nginx import render_site

# Kept between runs: installing the peers takes longer than benchmarking them.
TOOLS = Path(os.environ.get("HLS_BENCH_TOOLS", "/tmp/hls-bench-tools"))
HLS_PROXY_VERSION = "3.6.6"
# mediaflow-proxy keeps segments only in Redis; this database keeps its keys away from the
# gateway's (db 0, per-run prefixes) and from the tests'.
MEDIAFLOW_REDIS = "redis://127.0.0.1:6379/14"


def get(url: str, timeout: float = 30) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers of one GET (errors included: callers check the status)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def sibling(link: str, name: str) -> str:
    """A gateway /p/<token>/ link grants a directory: any file name in it is a valid link,
    so one mint serves every segment name (minting spawns a Python process)."""
    return link.rsplit("/", 1)[0] + "/" + name


class PeerNginx:
    """nginx from a private prefix with N worker processes and a caller-written http body
    (common.Nginx hardcodes one worker and one server block)."""

    def __init__(self, work: Path, port: int, workers: int = 1) -> None:
        self.work, self.port, self.workers = work, port, workers
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, http_body: str) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        # As root, workers would drop to `nobody`, who cannot enter mkdtemp's 0700 dirs.
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "".join(
            f"  {kind}_temp_path {self.work}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (self.work / "nginx.conf").write_text(
            f"{user}worker_processes {self.workers};\npid {self.work}/nginx.pid;\n"
            f"error_log {self.work}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
            "  keepalive_requests 1000000;\n  default_type application/octet-stream;\n"
            "  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }\n"
            f"{temp}{http_body}\n}}\n"
        )
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.work), "-c", str(self.work / "nginx.conf"),
             "-g", "daemon off;"]
        )  # fmt: skip
        wait_port(self.port)
        # The port opens before every worker is forked; RSS sampling needs them all.
        deadline = time.monotonic() + 5
        while len(children(self.process.pid)) < self.workers and time.monotonic() < deadline:
            time.sleep(0.05)

    def static(self, media: Path) -> str:
        """A server block serving the media; `cold_<n>_<file>` names map onto `<file>`, so
        any number of distinct segment names exist without copying files. With several
        workers, `reuseport`: otherwise one worker often accepts every connection of a
        burst (wrk opens all of its at once) and the others idle."""
        reuseport = " reuseport" if self.workers > 1 else ""
        return (
            f"  server {{\n    listen 127.0.0.1:{self.port}{reuseport};\n"
            f"    location ~ ^/vod/cold_\\d+_(.+)$ {{ alias {media}/$1; }}\n"
            f"    location /vod/ {{ alias {media}/; }}\n  }}\n"
        )

    def worker_pids(self) -> list[int]:
        return children(self.process.pid) if self.process else []

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def render_front_site(backends: list[str], port: int, cache_dir: Path, work: Path) -> str:
    """The shipped nginx/hls-gateway.conf with this run's addresses and paths, nothing
    else changed: the same rendering the tests use."""
    return render_site(backends, port, cache_dir, work)


def rss_bytes(pid: int) -> int:
    """Resident set size from /proc (0 once the process is gone)."""
    return rss_parts(pid)["VmRSS"]


def rss_parts(pid: int) -> dict[str, int]:
    """VmRSS and its parts in bytes: RssAnon (the process's own heap) and RssFile (mapped
    files: page cache the kernel shares and can reclaim, e.g. mmap'ed cache objects)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        status = ""
    parts = {}
    for key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
        match = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
        parts[key] = int(match.group(1)) * 1024 if match else 0
    return parts


def gateway_worker_pids(pid: int) -> list[int]:
    """With GATEWAY_WORKERS > 1 the started process only supervises forked workers; with
    one worker it is the worker."""
    return children(pid) or [pid]


class HlsProxy:
    """@warren-bank/hls-proxy (Node.js): `/<base64(url)>.<ext>`, segments prefetched into
    RAM when a playlist passes through with --prefetch."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.home = TOOLS / f"hls-proxy-{HLS_PROXY_VERSION}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def script(self) -> Path:
        return self.home / "node_modules/@warren-bank/hls-proxy/hls-proxy/bin/hlsd.js"

    def install(self) -> str | None:
        """None when ready, else why not."""
        if self.script.exists():
            return None
        if not shutil.which("npm"):
            return "npm is not installed"
        return install(
            ["npm", "install", "--prefix", str(self.home), "--no-audit", "--no-fund",
             "--fetch-retries", "1", f"@warren-bank/hls-proxy@{HLS_PROXY_VERSION}"],
            self.script,
        )  # fmt: skip

    def start(self) -> None:
        # hlsd listens on 0.0.0.0 with no option to change it; this preload narrows its
        # listen() to loopback so nothing outside the machine can reach the bench.
        preload = self.home / "bind-loopback.js"
        preload.write_text(
            "const net = require('net');\n"
            "const listen = net.Server.prototype.listen;\n"
            "net.Server.prototype.listen = function (port, host, ...rest) {\n"
            "  if (host === '0.0.0.0') host = '127.0.0.1';\n"
            "  return listen.call(this, port, host, ...rest);\n};\n"
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["node", "-r", str(preload), str(self.script),
                 "--host", f"127.0.0.1:{self.port}", "--port", str(self.port),
                 "--prefetch", "--cache-storage", "memory", "--max-segments", "20", "-v", "0"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_port(self.port)

    def url(self, upstream: str) -> str:
        ext = upstream.rsplit(".", 1)[-1]
        return f"http://127.0.0.1:{self.port}/{base64.b64encode(upstream.encode()).decode()}.{ext}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class MediaFlow:
    """mediaflow-proxy (FastAPI under uvicorn): `/proxy/hls/manifest.m3u8?d=<url>` rewrites
    a playlist to `/proxy/hls/segment.ts?d=<url>` links; segments are cached in Redis."""

    password = "bench-mediaflow-password"

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.venv = TOOLS / "mediaflow-venv"
        self.process: subprocess.Popen[bytes] | None = None
        self.keys_before: set[str] = set()

    def install(self) -> str | None:
        uvicorn = self.venv / "bin" / "uvicorn"
        probe = [str(self.venv / "bin" / "python"), "-c", "import mediaflow_proxy"]
        if uvicorn.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
            return None
        problem = install([sys.executable, "-m", "venv", str(self.venv)], self.venv / "bin" / "pip")
        if problem:
            return problem
        return install(
            [str(self.venv / "bin" / "pip"), "install", "-q", "--retries", "1", "--timeout", "30",
             "mediaflow-proxy"],
            uvicorn,
        )  # fmt: skip

    def start(self) -> None:
        env = {
            **os.environ,
            "API_PASSWORD": self.password,
            "REDIS_URL": MEDIAFLOW_REDIS,
            # Set, so nothing ever asks a public service for this machine's address.
            "PUBLIC_IP": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.venv / "bin" / "uvicorn"), "mediaflow_proxy.main:app",
                 "--host", "127.0.0.1", "--port", str(self.port),
                 "--no-access-log", "--log-level", "warning"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.log.parent,
            )  # fmt: skip
        wait_port(self.port, timeout=60)
        self.keys_before = self.keys()

    def keys(self) -> set[str]:
        out = subprocess.run(
            ["redis-cli", "-u", MEDIAFLOW_REDIS, "--scan", "--pattern", "mfp:*"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return set(out.stdout.split())

    def manifest_url(self, upstream: str) -> str:
        query = urllib.parse.urlencode({"d": upstream, "api_password": self.password})
        return f"http://127.0.0.1:{self.port}/proxy/hls/manifest.m3u8?{query}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process is None:
            return
        # The segments it cached (mfp:*) would sit in the shared Redis for their 5-minute TTL.
        keys = sorted(self.keys() - self.keys_before)
        if keys:
            subprocess.run(
                ["redis-cli", "-u", MEDIAFLOW_REDIS, "del", *keys],
                capture_output=True, check=False,
            )  # fmt: skip


def drop_redis_prefix(url: str, prefix: str) -> None:
    """Delete a finished run's gateway index keys: every run uses its own prefix, and the
    Redis is shared with other people's runs and tests."""
    keys = subprocess.run(
        ["redis-cli", "-u", url, "--scan", "--pattern", f"{prefix}*"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    for start in range(0, len(keys), 500):
        subprocess.run(
            ["redis-cli", "-u", url, "del", *keys[start : start + 500]],
            capture_output=True, check=False,
        )  # fmt: skip


def install(command: list[str], product: Path) -> str | None:
    """Run an installer; None once `product` exists, else a one-line reason (no network,
    no registry): the caller skips that peer instead of failing the whole benchmark."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{command[0]} failed: {exc}"
    if out.returncode != 0 or not product.exists():
        lines = (out.stderr or out.stdout).strip().splitlines() or ["no output"]
        reason = next((line for line in lines if "error" in line.lower()), lines[-1])
        return f"{Path(command[0]).name} exited {out.returncode}: {reason}"
    return None


def written_uri(playlist: bytes, needle: str) -> str:
    """The first URI line of a rewritten playlist that carries `needle` (a file name,
    perhaps base64- or %-encoded): the exact link a player would fetch next."""
    for line in playlist.decode().splitlines():
        if line and not line.startswith("#") and needle in line:
            return line.strip()
    raise LookupError(f"no URI with {needle!r} in the rewritten playlist")


def print_ratios(summary: dict[str, object], baseline: str) -> None:
    """A second ratio column for a `report()` summary: each row against another row."""
    base = summary[baseline]["median"]  # type: ignore[index]
    print(f"\n| server | ratio to {baseline} |\n|---|---|")
    for name, row in summary.items():
        value = row["median"]  # type: ignore[index]
        ratio = value / base if base else float("nan")
        print(f"| {name} | {ratio:.2f}× |" if ratio >= 0.05 else f"| {name} | {ratio:.4f}× |")


def flag_errors(results: dict[str, list[dict[str, float]]]) -> None:
    """One line per run that saw non-2xx answers or socket errors: those figures are suspect."""
    for name, runs in results.items():
        for i, run in enumerate(runs, 1):
            if run.get("errors") or run.get("socket_errors"):
                print(
                    f"!! {name} run {i}: {run.get('errors', 0):.0f} non-2xx, "
                    f"{run.get('socket_errors', 0):.0f} socket errors/timeouts"
                )


def print_latency(*results: dict[str, list[dict[str, float]]]) -> None:
    """wrk's p50 / p99 per server (medians over runs): a fair median with a starved tail
    shows here, not in req/s."""
    print("\n| server | p50 ms | p99 ms | KB per response (medians of runs) |\n|---|---|---|---|")
    for group in results:
        for name, runs in group.items():
            p50, p99, size = (
                median([r.get(key, float("nan")) for r in runs])
                for key in ("p50_ms", "p99_ms", "bytes_per_response")
            )
            print(f"| {name} | {p50:,.2f} | {p99:,.2f} | {size / 1024:,.1f} |")


def print_cpu(results: dict[str, list[dict[str, float]]]) -> None:
    """Each server's CPU per request and the load generator's CPU (medians of runs). Where
    wrk's share is near 1.0 for two servers, their req/s is wrk's limit, not theirs, and the
    CPU each spent per request is what tells them apart."""
    print(
        "\n| server | its CPU per request, µs | wrk's CPU, share of its core "
        "(medians of runs) |\n|---|---|---|"
    )
    for name, runs in results.items():
        server = median([r.get("server_cpu_us", float("nan")) for r in runs])
        client = median([r.get("client_cpu_share", float("nan")) for r in runs])
        print(f"| {name} | {server:,.1f} | {client:.2f} |")


def load_note(when: str) -> str:
    """The machine's load average before a run, printed with the tables: these benches share
    the cores with whatever else runs, and a load near the CPU count before a run (ours have
    not started yet) means someone else is busy and the figures are noisy."""
    one, five, _ = os.getloadavg()
    note = f"load average {when}: {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"
    print(note)
    return note
