"""A real Redis for the tests: the machine's own when it answers, else a throwaway one."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.support.ports import free_port

LOCAL_URL = "redis://127.0.0.1:6379/9"


def answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@contextmanager
def throwaway_redis(workdir: Path) -> Iterator[str]:
    """`redis-server` on a free loopback port, keeping nothing on disk, stopped afterwards;
    `workdir` (made when missing) is its working directory."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (tests/run.sh installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = _server(binary, _ephemeral(port, workdir), workdir)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait(lambda: answers(url), "the throwaway redis-server", timeout=10, process=process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def redis_for_tests(workdir: Path) -> Iterator[str]:
    if answers(LOCAL_URL):
        yield LOCAL_URL
        return
    with throwaway_redis(workdir) as url:
        yield url


def _ephemeral(port: int, workdir: Path) -> list[str]:
    """A server's arguments: loopback only, on `port`, keeping nothing on disk."""
    return [
        "--bind", "127.0.0.1", "--port", str(port),
        "--save", "", "--appendonly", "no", "--dir", str(workdir),
    ]  # fmt: skip


def _server(binary: str, args: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [binary, *args], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait(
    check: Callable[[], bool],
    what: str,
    timeout: float = 15,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Until `check()`; fails once `timeout` passed or `process` exited."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline or (process is not None and process.poll() is not None):
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.05)


@contextmanager
def throwaway_sentinel(workdir: Path) -> Iterator[str]:
    """A master and one Sentinel watching it: yields a `redis+sentinel://` URL."""
    with throwaway_redis(workdir / "master") as master_url:
        master_port = int(master_url.rsplit(":", 1)[1].split("/")[0])
        port = free_port()
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor gateway 127.0.0.1 {master_port} 1\n"
            "sentinel down-after-milliseconds gateway 5000\n"
        )
        binary = shutil.which("redis-sentinel") or shutil.which("redis-server")
        assert binary is not None
        process = _server(binary, [str(conf), "--sentinel"], workdir)
        try:
            probe = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
            _wait(lambda: _answers_sentinel(probe), "redis-sentinel")
            yield f"redis+sentinel://127.0.0.1:{port}/gateway/0"
        finally:
            process.terminate()
            process.wait(10)


def _answers_sentinel(client: redis.Redis) -> bool:
    try:
        return bool(client.execute_command("SENTINEL", "get-master-addr-by-name", "gateway"))
    except (redis.RedisError, OSError):
        return False


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) exists and is free too."""
    import socket

    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port + 10000)) != 0:
                return port


@contextmanager
def throwaway_cluster(workdir: Path, nodes: int = 3) -> Iterator[str]:
    """Three masters forming a Redis Cluster: yields a `redis+cluster://` URL."""
    binary = shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    assert binary is not None and cli is not None
    ports = [_cluster_port() for _ in range(nodes)]
    processes = [
        _server(
            binary,
            [
                *_ephemeral(port, workdir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
            ],
            workdir,
        )
        for port in ports
    ]
    try:
        for port in ports:
            _wait(lambda port=port: answers(f"redis://127.0.0.1:{port}/0"), "cluster node")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        probe = redis.Redis(host="127.0.0.1", port=ports[0], socket_timeout=0.5)
        _wait(lambda: b"cluster_state:ok" in probe.execute_command("CLUSTER", "INFO"), "cluster")
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


class RestartableRedis:
    """A redis-server on a fixed port that a test can stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self._process = _server(binary, _ephemeral(self.port, self.workdir), self.workdir)
        _wait(lambda: answers(self.url), "redis-server")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


@contextmanager
def restartable_redis(workdir: Path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
