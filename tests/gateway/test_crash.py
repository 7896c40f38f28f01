"""kill -9 during a fill: the half-written object is never served, and its temp file goes."""

import asyncio
import os
import signal
import sys

import aiohttp

from tests.support.ports import free_port

SEG = "/ts/seg_001.ts"


async def start(env) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(base + "/readyz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("gateway did not start")


async def test_a_fill_killed_mid_way_is_fetched_again_whole_after_restart(origin, media, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_PORT=str(free_port()),
        GATEWAY_CACHE_DIR=str(tmp_path / "cache"),
        GATEWAY_SECRET="k" * 32,
        GATEWAY_ALLOW_PRIVATE_UPSTREAMS="true",
        GATEWAY_PREFETCH_SEGMENTS="0",
        GATEWAY_ACCESS_LOG="off",
    )
    tmp_dir = tmp_path / "cache" / "tmp"
    process = await start(env)
    link = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "url",
        origin.base_url + SEG,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    url = (await link.communicate())[0].decode().strip()
    origin.behave(SEG, drip=(8 * 1024, 0.2))  # seconds to complete

    async def read_some() -> None:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            await response.content.readexactly(16 * 1024)
            await asyncio.sleep(30)

    reader = asyncio.create_task(read_some())
    for _ in range(50):
        if tmp_dir.exists() and any(tmp_dir.iterdir()):
            break
        await asyncio.sleep(0.1)
    assert any(tmp_dir.iterdir()), "the fill should be under way"
    os.kill(process.pid, signal.SIGKILL)
    await process.wait()
    reader.cancel()
    assert any(tmp_dir.iterdir())  # the orphan is still there

    origin.unbehave(SEG)
    process = await start(env)
    try:
        assert not any(tmp_dir.iterdir())  # cleaned on start
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.headers["X-Cache"] == "MISS"  # nothing partial was ever admitted
            assert await response.read() == media.read(SEG)
    finally:
        process.terminate()
        await process.wait()
    assert origin.count(SEG) == 2
