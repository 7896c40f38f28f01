"""Several worker processes on one port share one cache, one index and one upstream fetch."""

import asyncio
import os
import re
import sys
import uuid

import aiohttp
import pytest

from tests.support.ports import free_port

SEG = "/ts/seg_003.ts"


@pytest.fixture
async def two_workers(tmp_path, redis_url):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_PORT=str(port), GATEWAY_CACHE_DIR=str(tmp_path / "cache"),
        GATEWAY_SECRET="w" * 32, GATEWAY_ALLOW_PRIVATE_UPSTREAMS="true",
        GATEWAY_REDIS_URL=redis_url, GATEWAY_REDIS_PREFIX=f"test-{uuid.uuid4().hex}",
        GATEWAY_WORKERS="2", GATEWAY_ACCESS_LOG="off",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(base + "/readyz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    yield base, env
    process.terminate()
    await process.wait()


async def mint(env, upstream: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "url", upstream, env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    return out.decode().strip()


async def test_fifty_cold_requests_across_two_workers_cause_one_upstream_fetch(
    two_workers, origin, media
):
    base, env = two_workers
    origin.behave(SEG, drip=(16 * 1024, 0.05))
    url = await mint(env, origin.base_url + SEG)

    async def one() -> bytes:
        # A connection of its own each, so that the kernel spreads them over both workers.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async with s.get(url) as response:
                assert response.status == 200
                return await response.read()

    bodies = await asyncio.gather(*(one() for _ in range(50)))
    assert origin.count(SEG) == 1
    assert all(body == media.read(SEG) for body in bodies)

    # Each worker counts a request once its handler has returned, a moment after the client
    # has the last byte; any worker's /metrics answers for both.
    served = 0.0
    for _ in range(50):
        async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as response:
            text = await response.text()
        pattern = r'^gateway_requests_total\{route="p",status="200"\} (\S+)$'
        served = sum(float(v) for v in re.findall(pattern, text, re.M))
        if served >= 50:
            break
        await asyncio.sleep(0.1)
    assert served == 50
