"""Several worker processes on one port share one cache, one index and one upstream fetch."""

import asyncio
import re
import uuid

import aiohttp
import pytest

from tests.support.gateway_process import GatewayExited, gateway_process

SEG = "/ts/seg_003.ts"


@pytest.fixture
async def two_workers(tmp_path, redis_url):
    async with gateway_process(
        tmp_path / "cache",
        redis_url=redis_url,
        redis_prefix=f"test-{uuid.uuid4().hex}",
        workers="2",
        unix_socket=str(tmp_path / "gateway.sock"),
    ) as gateway:
        yield gateway


async def test_fifty_cold_requests_across_two_workers_cause_one_upstream_fetch(
    two_workers, origin, media
):
    base = two_workers.base_url
    origin.behave(SEG, drip=(16 * 1024, 0.05))
    url = await two_workers.mint(origin.base_url + SEG)

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


async def test_every_worker_also_answers_on_the_unix_socket(two_workers, tmp_path, origin, media):
    gateway = two_workers
    path = (await gateway.mint(origin.base_url + SEG)).removeprefix(gateway.base_url)
    connector = aiohttp.UnixConnector(path=str(tmp_path / "gateway.sock"), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> tuple[int, bytes]:
            async with session.get("http://gateway" + path) as response:
                return response.status, await response.read()

        answers = await asyncio.gather(*(one() for _ in range(20)))
    assert answers == [(200, media.read(SEG))] * 20
    assert origin.count(SEG) == 1


async def test_a_single_worker_listens_on_the_unix_socket_too(tmp_path, origin, media):
    sock = tmp_path / "gateway.sock"
    sock.write_bytes(b"keep")  # a regular file in the way is an error, never deleted
    with pytest.raises(GatewayExited) as refused:
        async with gateway_process(tmp_path / "refused", unix_socket=str(sock)):
            pass
    assert refused.value.code == 2  # a settings error
    assert refused.value.stderr.strip() == (
        f"hls-gateway: GATEWAY_UNIX_SOCKET: {sock} exists and is not a socket"
    )
    assert sock.read_bytes() == b"keep"
    missing = tmp_path / "no-such-directory" / "gateway.sock"
    with pytest.raises(GatewayExited) as refused:
        async with gateway_process(tmp_path / "refused", unix_socket=str(missing)):
            pass
    assert refused.value.stderr.strip() == (
        f"hls-gateway: GATEWAY_UNIX_SOCKET: cannot listen on {missing}: No such file or directory"
    )
    sock.unlink()
    for _ in range(2):  # the second start replaces the socket file the first one left
        async with gateway_process(tmp_path / "cache", unix_socket=str(sock)) as gateway:
            path = (await gateway.mint(origin.base_url + SEG)).removeprefix(gateway.base_url)
            connector = aiohttp.UnixConnector(path=str(sock))
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get("http://gateway" + path) as response:
                    assert response.status == 200
                    assert await response.read() == media.read(SEG)
    assert oct(sock.stat().st_mode & 0o777) == oct(0o666)
