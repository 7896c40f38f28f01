"""Not an open proxy: signed links only, no escaping the grant, no private upstreams by default."""

import asyncio

import aiohttp
import pytest
from yarl import URL

from gateway.links import PREFIX

SEG = "/ts/seg_000.ts"


async def raw_get(base_url: str, raw_path: str) -> tuple[int, bytes]:
    """Send the request line exactly as given: no client-side normalisation of dot segments."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {raw_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def split(url: str) -> tuple[str, str]:
    path = url[url.index(PREFIX) :]
    token, _, rest = path[len(PREFIX) :].partition("/")
    return token, rest


async def test_a_tampered_token_is_403_and_the_origin_sees_nothing(make_gateway, origin):
    gw = await make_gateway()
    token, rest = split(gw.mint(origin.base_url + SEG))
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for path in (f"{PREFIX}{forged}/{rest}", f"{PREFIX}{token[:20]}/{rest}", f"{PREFIX}x/{rest}"):
        status, body = await raw_get(gw.base_url, path)
        assert status == 403, path
        assert body.count(b"\n") == 1
    assert origin.requests == []


async def test_an_expired_link_is_410(make_gateway, origin):
    gw = await make_gateway()
    grant_url = gw.mint(origin.base_url + SEG, ttl=1)
    await asyncio.sleep(1.2)
    async with aiohttp.ClientSession() as session, session.get(grant_url) as response:
        assert response.status == 410
    assert origin.requests == []


@pytest.mark.parametrize(
    "escape",
    [
        "../secret.txt",
        "..%2fsecret.txt",
        "%2e%2e/secret.txt",
        "%2E%2E/secret.txt",
        "a/../../secret.txt",
        "..%5csecret.txt",
        "%252e%252e/secret.txt",
    ],
)
async def test_paths_that_leave_the_granted_directory_are_403(make_gateway, origin, escape):
    gw = await make_gateway()
    token, _ = split(gw.mint(origin.base_url + SEG))
    status, _ = await raw_get(gw.base_url, f"{PREFIX}{token}/{escape}")
    assert status == 403
    assert origin.requests == []


async def test_dot_segments_that_stay_inside_are_normalised(make_gateway, origin, media):
    gw = await make_gateway()
    token, _ = split(gw.mint(origin.base_url + SEG))
    status, body = await raw_get(gw.base_url, f"{PREFIX}{token}/./x/../seg_001.ts")
    assert status == 200
    assert body == (media.root / "ts" / "seg_001.ts").read_bytes()


@pytest.mark.parametrize(
    "host", ["127.1", "0x7f000001", "[::ffff:127.0.0.1]", "localhost.", "[::1]"]
)
async def test_private_upstreams_are_refused_by_default(make_gateway, origin, host):
    gw = await make_gateway(allow_private_upstreams=False)
    port = origin.base_url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.mint(f"http://{host}:{port}{SEG}")) as response:
            assert response.status == 403
            assert "private" in await response.text()
    assert origin.requests == []


async def test_every_redirect_hop_is_checked(make_gateway, origin, monkeypatch):
    """The loopback origin must be allowed for the first hop, so the check is observed directly."""
    from gateway.errors import ForbiddenUpstream

    gw = await make_gateway()
    client = gw.state.client
    checked: list[str] = []
    original = client.check_url

    def check(url: str):
        checked.append(url)
        if "//127.1:" in url:
            raise ForbiddenUpstream("upstream address is private")
        return original(url)

    monkeypatch.setattr(client, "check_url", check)
    port = origin.base_url.rsplit(":", 1)[1]
    origin.behave("/hop.ts", redirect=f"http://127.1:{port}{SEG}")
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.mint(origin.base_url + "/hop.ts")) as response:
            assert response.status == 403
    assert checked == [origin.base_url + "/hop.ts", f"http://127.1:{port}{SEG}"]
    assert [r.path_qs for r in origin.requests] == ["/hop.ts"]


async def test_non_http_upstream_schemes_are_refused(make_gateway):
    gw = await make_gateway()
    from gateway.signing import Grant

    path = gw.state.links.path(Grant("file:///etc/", (), None), "passwd")
    async with aiohttp.ClientSession() as session, session.get(gw.base_url + path) as response:
        assert response.status == 400


async def test_headers_bound_into_a_link_are_sent_upstream_exactly(make_gateway, origin):
    gw = await make_gateway()
    headers = (("Referer", "https://site.example/watch?v=1"), ("Cookie", "a=1; b=2"))
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.mint(origin.base_url + SEG, headers)) as response:
            await response.read()
    seen = origin.requests[0].headers
    assert seen["Referer"] == "https://site.example/watch?v=1"
    assert seen["Cookie"] == "a=1; b=2"


async def test_upstream_paths_and_queries_are_forwarded_byte_exact(make_gateway, origin, media):
    gw = await make_gateway()
    odd = "/ts/seg_000.ts?sig=a%2Fb%3D%3D&exp=1&x=%7E"
    async with aiohttp.ClientSession() as session:
        # encoded=True: the test's own client must not normalise the URL either.
        async with session.get(URL(gw.mint(origin.base_url + odd), encoded=True)) as response:
            assert response.status == 200
    assert origin.requests[0].path_qs == odd


async def test_unknown_methods_and_paths_never_give_500(make_gateway):
    gw = await make_gateway()
    async with aiohttp.ClientSession() as session:
        for method, path in [
            ("POST", "/p/x/y.ts"),
            ("DELETE", "/p/x/y"),
            ("GET", "/p/"),
            ("GET", "/p/onlytoken"),
            ("GET", "/nothing"),
            ("PUT", "/healthz"),
        ]:
            async with session.request(method, gw.base_url + path) as response:
                assert 400 <= response.status < 500, (method, path, response.status)
