"""What the origin sees of the gateway's upstream connections: kept alive across objects, and
each request carrying what the gateway promises (Host, the client's request id, gzip)."""

import aiohttp

SEGMENTS = [f"/ts/seg_00{n}.ts" for n in range(4)]


async def get(url: str, **headers: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.read()


async def test_objects_fetched_one_after_another_share_one_upstream_connection(
    make_gateway, origin, media
):
    gw = await make_gateway()
    for path in SEGMENTS:
        assert await get(gw.mint(origin.base_url + path)) == (200, media.read(path))

    assert [r.path_qs for r in origin.requests] == SEGMENTS
    peers = {r.peer for r in origin.requests}
    assert len(peers) == 1 and None not in peers


async def test_each_upstream_request_names_its_host_and_carries_the_clients_request_id(
    make_gateway, origin, media
):
    gw = await make_gateway()
    status, _ = await get(gw.mint(origin.base_url + SEGMENTS[0]), **{"X-Request-Id": "abc-123"})

    assert status == 200
    [seen] = origin.requests
    assert seen.headers["Host"] == origin.base_url.removeprefix("http://")
    assert seen.headers["X-Request-Id"] == "abc-123"
    assert "gzip" in seen.headers["Accept-Encoding"]
