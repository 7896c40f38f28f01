"""The fast paths a hit takes: mapped disk files, remembered routes, one front door."""

import asyncio
import time

import aiohttp

from gateway.cache.keys import storage_name
from gateway.event_loop import new_event_loop

SEG = "/ts/seg_000.ts"
ADMIN = {"Authorization": "Bearer admin-token"}


async def get(session: aiohttp.ClientSession, url: str, **kwargs) -> tuple[int, dict, bytes]:
    async with session.get(url, **kwargs) as response:
        return response.status, response.headers.copy(), await response.read()


def name_of(gw, upstream_url: str) -> str:
    return storage_name(gw.state.fetcher.key_for(upstream_url))


async def test_disk_hits_come_from_a_mapped_file_with_ranges_validators_and_head(
    make_gateway, origin, media
):
    gw = await make_gateway(cache_memory_bytes=0)
    url = gw.mint(origin.base_url + SEG)
    expected = (media.root / SEG.lstrip("/")).read_bytes()
    async with aiohttp.ClientSession() as session:
        await get(session, url)  # the miss fills the disk cache
        for _ in range(3):
            status, headers, body = await get(session, url)
            assert (status, headers["X-Cache"], body) == (200, "HIT", expected)
        assert gw.state.cache.mapped.get(name_of(gw, origin.base_url + SEG)) is not None
        assert gw.state.cache.memory.bytes == 0
        status, headers, body = await get(session, url, headers={"Range": "bytes=-188"})
        assert (status, body) == (206, expected[-188:])
        assert (
            headers["Content-Range"]
            == f"bytes {len(expected) - 188}-{len(expected) - 1}/{len(expected)}"
        )
        async with session.head(url) as response:
            assert response.status == 200
            assert int(response.headers["Content-Length"]) == len(expected)
            assert await response.read() == b""
        status, _, body = await get(session, url, headers={"If-None-Match": headers["ETag"]})
        assert (status, body) == (304, b"")
    assert origin.count(SEG) == 1


async def test_a_body_larger_than_one_slice_arrives_whole_for_a_slow_reader(
    make_gateway, origin, media
):
    gw = await make_gateway(cache_memory_bytes=0)
    path = "/ts/seg_001.ts"
    url = gw.mint(origin.base_url + path)
    expected = (media.root / path.lstrip("/")).read_bytes()
    async with aiohttp.ClientSession() as session:
        await get(session, url)
    host, port = gw.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET {url[len(gw.base_url) :]} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    received = bytearray()
    while chunk := await reader.read(4096):
        received += chunk
        await asyncio.sleep(0.001)  # a reader slower than the socket, so the writer must wait
    writer.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    assert body == expected


async def test_a_purged_object_is_not_served_from_its_map(make_gateway, origin):
    gw = await make_gateway(cache_memory_bytes=0, admin_token="admin-token")
    url = gw.mint(origin.base_url + SEG)
    async with aiohttp.ClientSession() as session:
        await get(session, url)
        _, headers, _ = await get(session, url)
        assert headers["X-Cache"] == "HIT"
        async with session.post(gw.base_url + "/admin/cache/purge", headers=ADMIN) as response:
            assert response.status == 200
        _, headers, _ = await get(session, url)
        assert headers["X-Cache"] == "MISS"
    assert origin.count(SEG) == 2


async def test_a_file_cut_behind_the_cache_is_refetched_not_served(make_gateway, origin, media):
    gw = await make_gateway(cache_memory_bytes=0)
    url = gw.mint(origin.base_url + SEG)
    expected = (media.root / SEG.lstrip("/")).read_bytes()
    async with aiohttp.ClientSession() as session:
        await get(session, url)
        path = gw.state.cache.store.path_of(name_of(gw, origin.base_url + SEG))
        # Replaced by a shorter file (a rename, as any writer of this directory must do).
        spare = path.with_name("spare")
        spare.write_bytes(expected[:1000])
        spare.replace(path)
        status, _, body = await get(session, url)
    assert (status, body) == (200, expected)
    assert origin.count(SEG) == 2


async def test_a_remembered_link_still_expires(make_gateway, origin):
    gw = await make_gateway()
    url = gw.mint(origin.base_url + SEG, ttl=1)
    async with aiohttp.ClientSession() as session:
        status, _, _ = await get(session, url)
        assert status == 200
        deadline = time.time() + 3
        while time.time() < deadline:
            status, _, _ = await get(session, url)
            if status != 200:
                break
            await asyncio.sleep(0.1)
    assert status == 410


async def test_request_ids_are_fresh_for_every_request(make_gateway, origin):
    gw = await make_gateway()
    url = gw.mint(origin.base_url + SEG)
    async with aiohttp.ClientSession() as session:
        ids = [(await get(session, url))[1]["X-Request-Id"] for _ in range(5)]
    assert len(set(ids)) == 5
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in ids)


async def test_a_shed_request_still_carries_cors_and_a_request_id(make_gateway, origin):
    gw = await make_gateway(max_client_requests=1)
    origin.behave(SEG, delay_headers=0.5)
    url = gw.mint(origin.base_url + SEG)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(get(session, url))
        await asyncio.sleep(0.2)
        status, headers, body = await get(session, url)
        assert (status, body.count(b"\n")) == (503, 1)
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert "X-Request-Id" in headers
        assert (await slow)[0] == 200


def test_the_event_loop_setting_picks_a_loop():
    import uvloop

    for choice, expected in (("asyncio", False), ("uvloop", True), ("auto", True)):
        loop = new_event_loop(choice)
        try:
            assert isinstance(loop, uvloop.Loop) is expected
        finally:
            loop.close()
