"""Real nginx in front of test gateways, configured from the project's own nginx/ file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "nginx" / "hls-gateway.conf"


def nginx_available() -> bool:
    return shutil.which("nginx") is not None


def render_site(backends: list[str], port: int, cache_dir: Path, work: Path) -> str:
    """The shipped site config with this test's addresses and paths, nothing else changed."""
    site = SITE.read_text()
    servers = "".join(f"    server {b} max_fails=2 fail_timeout=5s;\n" for b in backends)
    site = re.sub(r"(?m)^    server unix:/run/hls-gateway/[^\n]*\n", servers, site, count=1)
    site = re.sub(r"(?m)^    listen \[::\]:80;\n", "", site)
    site = re.sub(r"(?m)^    listen 80;", f"    listen 127.0.0.1:{port};", site)
    site = site.replace("/var/cache/nginx/hls-playlists", str(work / "playlists"))
    return site.replace("alias /var/cache/hls-gateway/;", f"alias {cache_dir}/;")


class Nginx:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def write(self, backends: list[str], cache_dir: Path) -> Path:
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "logs").mkdir(exist_ok=True)
        site = render_site(backends, self.port, cache_dir, self.work)
        conf = self.work / "nginx.conf"
        # As root, nginx's workers would drop to `nobody`, who cannot enter pytest's 0700
        # temp directories.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf.write_text(
            user + "worker_processes 1;\n"
            f"pid {self.work}/nginx.pid;\n"
            f"error_log {self.work}/logs/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "  default_type application/octet-stream;\n"
            "  access_log off;\n"
            f"  client_body_temp_path {self.work}/body;\n"
            f"  proxy_temp_path {self.work}/proxy;\n"
            f"  fastcgi_temp_path {self.work}/fastcgi;\n"
            f"  uwsgi_temp_path {self.work}/uwsgi;\n"
            f"  scgi_temp_path {self.work}/scgi;\n"
            f"{site}\n"
            "}\n"
        )
        return conf

    def check(self, conf: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nginx", "-t", "-p", str(self.work), "-c", str(conf)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    def start(self, conf: Path) -> None:
        self._process = subprocess.Popen(
            ["nginx", "-p", str(self.work), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self._process.poll() is not None:
                raise RuntimeError(
                    self._process.stderr.read().decode() if self._process.stderr else ""
                )
            time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
