"""`hls-gateway serve` as its own process: what runs in production, worker processes and
listening sockets included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.support.ports import free_port


@dataclass(frozen=True)
class GatewayProcess:
    base_url: str
    env: dict[str, str]
    pid: int  # with one worker (the default), the process that serves

    async def mint(self, upstream: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "url", upstream, env=self.env,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await process.communicate()
        return out.decode().strip()


@contextlib.asynccontextmanager
async def gateway_process(cache_dir: Path, **settings: str) -> AsyncIterator[GatewayProcess]:
    """Serve on a free port with `settings` (GATEWAY_<NAME> values); ready when yielded."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_PORT=str(port), GATEWAY_CACHE_DIR=str(cache_dir),
        GATEWAY_SECRET="w" * 32, GATEWAY_ALLOW_PRIVATE_UPSTREAMS="true",
        GATEWAY_ACCESS_LOG="off",
        **{f"GATEWAY_{name.upper()}": value for name, value in settings.items()},
    )  # fmt: skip
    with tempfile.TemporaryFile() as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=errors,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            if not await _ready(base, process):
                errors.seek(0)
                raise GatewayExited(process.returncode, errors.read().decode(errors="replace"))
            yield GatewayProcess(base, env, process.pid)
        finally:
            if process.returncode is None:
                process.terminate()
            await process.wait()


async def _ready(base: str, process: asyncio.subprocess.Process) -> bool:
    """Whether /readyz answered 200 (False: the process ended first)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            if process.returncode is not None:
                return False
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(base + "/readyz") as response:
                    if response.status == 200:
                        return True
            await asyncio.sleep(0.1)
    raise TimeoutError("the gateway did not become ready")


class GatewayExited(Exception):
    """`hls-gateway serve` ended before it was ready."""

    def __init__(self, code: int | None, stderr: str) -> None:
        super().__init__(f"exit code {code}: {stderr.strip()}")
        self.code = code
        self.stderr = stderr
