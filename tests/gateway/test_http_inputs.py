"""Hostile requests: mangled tokens, climbing paths, huge lines, odd methods, private and
unlisted upstreams. Each is a 4xx with one line of text, never a 500, and the origin sees
nothing. Requests go over raw sockets where an HTTP client would normalise them."""

import asyncio
import base64
import contextlib
import ipaddress
import zlib

import pytest

from gateway.addresses import host_allowed, is_public_address, literal_address
from gateway.signing import Grant, Signer, TokenError

SEG = "/ts/seg_000.ts"


async def raw(gw, request: bytes) -> tuple[int, bytes]:
    host, port = gw.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: gw.test", "Connection: close", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def one_line(body: bytes) -> bool:
    return b"\n" not in body.rstrip(b"\n") and b"Traceback" not in body


def token_of(gw, url: str) -> str:
    return url.removeprefix(gw.base_url).split("/")[2]


@pytest.fixture
async def gw(make_gateway):
    return await make_gateway()


# -- tokens -----------------------------------------------------------------------------------


def mangled(token: str) -> dict[str, str]:
    flip = {"A": "B", "B": "A"}
    cases = {
        "empty": "",
        "one character": "A",
        "not base64": "!!!!" + token[4:],
        "padding added": token + "==",
        "truncated by one": token[:-1],
        "truncated by two": token[:-2],
        "truncated by three": token[:-3],
        "truncated to half": token[: len(token) // 2],
        "doubled": token + token,
        "huge": "A" * 10_000,
        "percent-encoded": token[:10] + "%41" + token[13:],
        "standard alphabet": token.replace("-", "+").replace("_", "/"),
    }
    for at in (0, 1, 5, 17, len(token) // 2, len(token) - 1):
        cases[f"character {at} changed"] = token[:at] + flip.get(token[at], "A") + token[at + 1 :]
    return cases


async def test_every_mangled_token_is_a_one_line_403_and_reaches_no_origin(gw, origin):
    token = token_of(gw, gw.mint(origin.base_url + SEG))
    answers = {}
    for name, bad in mangled(token).items():
        if bad == token:
            continue
        answers[name] = await raw(gw, request("GET", f"/p/{bad}/seg_000.ts"))
    assert {name: status for name, (status, _) in answers.items()} == dict.fromkeys(answers, 403)
    assert all(one_line(body) for _, body in answers.values())
    assert origin.requests == []


async def test_a_token_from_another_secret_is_refused(gw, origin):
    other = Signer(b"another-secret-0123456789").mint(Grant(origin.base_url + "/ts/"))
    status, body = await raw(gw, request("GET", f"/p/{other}/seg_000.ts"))
    assert status == 403 and one_line(body)
    assert origin.requests == []


# -- credentials bound into a token -----------------------------------------------------------

COOKIE = "session=c00kie-5ecret-value-0123456789"
BEARER = "Bearer auth-5ecret-value-9876543210"


def decodings(token: str) -> list[bytes]:
    """Every way someone might try to read a token: as text, base64 of either alphabet,
    and raw inflate from any offset (grants are deflated before they are sealed)."""
    padded = token + "=" * (-len(token) % 4)
    raw_bytes = base64.urlsafe_b64decode(padded)
    found = [token.encode(), raw_bytes, base64.b64decode(padded, altchars=b"-_")]
    for start in range(len(raw_bytes)):
        with contextlib.suppress(zlib.error):
            found.append(zlib.decompress(raw_bytes[start:], wbits=-15))
    return found


def test_bound_credentials_and_the_upstream_host_are_not_readable_from_a_token():
    signer = Signer(b"test-secret-0123456789abcdef")
    grant = Grant(
        "https://secret-origin.example.com/vod/",
        (("Cookie", COOKIE), ("Authorization", BEARER)),
    )
    token = signer.mint(grant)
    for decoded in decodings(token):
        for secret in (COOKIE, BEARER, "c00kie-5ecret", "auth-5ecret", "secret-origin"):
            assert secret.encode() not in decoded
    assert signer.verify(token) == grant  # and yet the gateway reads it back whole


def test_swapping_or_flipping_any_byte_of_a_token_is_refused():
    signer = Signer(b"test-secret-0123456789abcdef")
    token = signer.mint(Grant("https://cdn.example.com/vod/", (("Cookie", COOKIE),)))
    raw_bytes = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    changed = []
    for at in range(len(raw_bytes)):
        flipped = bytearray(raw_bytes)
        flipped[at] ^= 0x01
        changed.append(bytes(flipped))
        if at + 1 < len(raw_bytes) and raw_bytes[at] != raw_bytes[at + 1]:
            swapped = bytearray(raw_bytes)
            swapped[at], swapped[at + 1] = swapped[at + 1], swapped[at]
            changed.append(bytes(swapped))
    refused = 0
    for variant in changed:
        with pytest.raises(TokenError):
            signer.verify(base64.urlsafe_b64encode(variant).rstrip(b"=").decode())
        refused += 1
    assert refused == len(changed) > 2 * len(raw_bytes) - 10


async def test_a_tampered_credential_token_is_a_403_over_http(gw, origin):
    url = gw.mint(origin.base_url + SEG, headers=(("Cookie", COOKIE), ("Authorization", BEARER)))
    token = token_of(gw, url)
    assert COOKIE not in url and "c00kie" not in url
    raw_bytes = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    statuses = []
    for at in range(0, len(raw_bytes), 5):
        variant = bytearray(raw_bytes)
        variant[at] ^= 0x80
        bad = base64.urlsafe_b64encode(bytes(variant)).rstrip(b"=").decode()
        statuses.append((await raw(gw, request("GET", f"/p/{bad}/seg_000.ts")))[0])
    assert set(statuses) == {403}
    assert origin.requests == []


# -- paths ------------------------------------------------------------------------------------

CLIMBS = [
    "../seg_000.ts",
    "../../../etc/passwd",
    "%2e%2e/seg_000.ts",
    "%2E%2E/%2e%2e/etc/passwd",
    ".%2e/seg_000.ts",
    "%252e%252e/seg_000.ts",
    "%25252e%25252e/seg_000.ts",
    "..%2fseg_000.ts",
    "..%2Fetc%2Fpasswd",
    "..%5cseg_000.ts",
    "..%255cseg_000.ts",
    "..\\seg_000.ts",
    "sub/../../seg_000.ts",
    "%2fetc/passwd",
    "/etc/passwd",
    "%5cetc%5cpasswd",
    "seg_000.ts%00.m3u8",
    "%00",
    "%2500",
]


@pytest.mark.parametrize("rest", CLIMBS)
async def test_paths_leaving_the_granted_directory_are_refused(rest, gw, origin):
    token = token_of(gw, gw.mint(origin.base_url + SEG))
    status, body = await raw(gw, request("GET", f"/p/{token}/{rest}"))
    assert status == 403 and one_line(body), (status, body)
    assert origin.requests == []


async def test_a_dot_segment_that_stays_inside_is_served(gw, origin, media):
    token = token_of(gw, gw.mint(origin.base_url + SEG))
    status, body = await raw(gw, request("GET", f"/p/{token}/sub/../seg_000.ts"))
    assert status == 200 and body == media.read(SEG)
    assert [r.path_qs for r in origin.requests] == [SEG]


# -- sizes and methods ------------------------------------------------------------------------


async def oversized(gw, origin) -> dict[str, tuple[int, bytes]]:
    token = token_of(gw, gw.mint(origin.base_url + SEG))
    path = f"/p/{token}/seg_000.ts"
    return {
        "64 KB path": await raw(gw, request("GET", f"/p/{token}/" + "a" * 65536)),
        "64 KB header": await raw(gw, request("GET", path, "X-Big: " + "b" * 65536)),
        "1,000 headers": await raw(gw, request("GET", path, *(f"X-H{i}: v" for i in range(1000)))),
        "NUL in the request line": await raw(gw, request("GET", f"/p/{token}/a\x00b.ts")),
    }


async def test_huge_paths_and_headers_are_4xx_never_500_and_reach_no_origin(gw, origin):
    answers = await oversized(gw, origin)
    statuses = {name: status for name, (status, _) in answers.items()}
    assert all(400 <= status < 500 for status in statuses.values()), statuses
    assert origin.requests == []


async def test_parser_errors_are_one_line_and_do_not_echo_the_request(gw, origin):
    answers = await oversized(gw, origin)
    token = token_of(gw, gw.mint(origin.base_url + SEG))
    for _status, body in answers.values():
        assert one_line(body) and token.encode() not in body and b"aaaaaaaa" not in body


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "CONNECT"])
async def test_odd_methods_are_4xx_and_reach_no_origin(method, gw, origin):
    token = token_of(gw, gw.mint(origin.base_url + SEG))
    target = f"/p/{token}/seg_000.ts" if method != "CONNECT" else "127.0.0.1:80"
    status, body = await raw(gw, request(method, target, body=b"x" * 10))
    assert 400 <= status < 500 and one_line(body), (status, body)
    assert origin.requests == []


async def test_an_absolute_form_request_target_is_not_proxied(gw, origin):
    status, body = await raw(gw, request("GET", origin.base_url + SEG))
    assert 400 <= status < 500 and one_line(body)
    assert origin.requests == []


# -- upstream addresses and the operator's host lists -----------------------------------------


def port_of(origin) -> int:
    return int(origin.base_url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "localhost",
        "localhost.",
        "LOCALHOST",
        "a.localhost",
    ],
)
async def test_loopback_spellings_are_refused_before_any_connection(host, make_gateway, origin):
    gw = await make_gateway(allow_private_upstreams=False)
    status, body = await raw(
        gw,
        request("GET", gw.mint(f"http://{host}:{port_of(origin)}{SEG}").removeprefix(gw.base_url)),
    )
    assert status == 403 and one_line(body), (status, body)
    assert origin.requests == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("fd00:ec2::254", False),
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::", False),
        ("64:ff9b::7f00:1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("64:ff9b::808:808", True),
    ],
)
def test_the_address_check_on_resolved_addresses(address, public):
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("[::1]", "::1"),
        ("cdn.example.com", None),
        ("1e100.net", None),
    ],
)
def test_literal_address_spellings(spelling, address):
    found = literal_address(spelling)
    assert (str(found) if found else None) == address


@pytest.mark.parametrize(
    ("host", "allow", "deny", "allowed"),
    [
        ("cdn.example.com", [], [], True),
        ("cdn.example.com", ["cdn.example.com"], [], True),
        ("CDN.Example.COM.", ["cdn.example.com"], [], True),
        ("other.example.com", ["cdn.example.com"], [], False),
        ("a.akamaized.net", ["*.akamaized.net"], [], True),
        ("a.b.akamaized.net", ["*.akamaized.net"], [], True),
        ("akamaized.net", ["*.akamaized.net"], [], False),
        ("evilakamaized.net", ["*.akamaized.net"], [], False),
        ("akamaized.net.evil.com", ["*.akamaized.net"], [], False),
        ("a.akamaized.net", ["*.akamaized.net"], ["a.akamaized.net"], False),
        ("cdn.example.com", [], ["*.example.com"], False),
        ("example.com", [], ["*.example.com"], True),
        ("127.0.0.1", ["cdn.example.com"], [], False),
    ],
)
def test_the_host_list_matcher(host, allow, deny, allowed):
    assert host_allowed(host, allow, deny) is allowed


def test_host_lists_come_from_comma_separated_environment_variables(monkeypatch):
    from gateway.settings import load_settings

    monkeypatch.setenv("GATEWAY_UPSTREAM_ALLOW", "cdn.example.com, *.akamaized.net")
    monkeypatch.setenv("GATEWAY_UPSTREAM_DENY", "bad.akamaized.net")
    settings = load_settings()
    assert settings.upstream_allow == ["cdn.example.com", "*.akamaized.net"]
    assert settings.upstream_deny == ["bad.akamaized.net"]


async def test_the_resolver_keeps_a_names_addresses_for_its_ttl_and_never_a_refused_one(
    monkeypatch,
):
    from gateway.upstream import ForbiddenAddressError, Resolver

    asked: list[str] = []

    async def pretend_dns(self, host, port):
        asked.append(host)
        return ["127.0.0.1", "::1"]

    monkeypatch.setattr(Resolver, "_lookup", pretend_dns)
    kept = Resolver(guard=False, ttl=30.0)
    assert await kept.resolve("cdn.test", 80) == ["127.0.0.1", "::1"]
    assert await kept.resolve("cdn.test.", 443) == ["127.0.0.1", "::1"]  # one name, any port
    assert asked == ["cdn.test"]
    fresh = Resolver(guard=False, ttl=0.0)
    for _ in range(2):
        await fresh.resolve("cdn.test", 80)
    assert asked == ["cdn.test"] * 3
    guarded = Resolver(guard=True, ttl=30.0)
    for _ in range(2):
        with pytest.raises(ForbiddenAddressError):
            await guarded.resolve("cdn.test", 80)
    assert asked == ["cdn.test"] * 5


async def test_a_name_resolving_to_loopback_is_refused_at_the_connector(
    make_gateway, origin, monkeypatch
):
    # The client dials what the resolver returned, so refusing there refuses the dial.
    from gateway.upstream import Resolver

    real = Resolver._lookup

    async def pretend_dns(self, host, port):
        return await real(self, "127.0.0.1" if host == "cdn.test" else host, port)

    monkeypatch.setattr(Resolver, "_lookup", pretend_dns)
    gw = await make_gateway(allow_private_upstreams=False)
    target = gw.mint(f"http://cdn.test:{port_of(origin)}{SEG}").removeprefix(gw.base_url)
    status, body = await raw(gw, request("GET", target))
    assert (status, body) == (403, b"upstream address is private\n")
    assert origin.requests == []


async def test_a_host_outside_the_allow_list_is_a_403_and_the_origin_sees_nothing(
    make_gateway, origin
):
    gw = await make_gateway(upstream_allow=["cdn.example.com", "*.akamaized.net"])
    status, body = await raw(
        gw, request("GET", gw.mint(origin.base_url + SEG).removeprefix(gw.base_url))
    )
    assert (status, body) == (403, b"upstream host not allowed\n")
    assert origin.requests == []


async def test_every_redirect_hop_is_held_to_the_host_lists(make_gateway, origin):
    gw = await make_gateway(upstream_allow=["127.0.0.1"])
    origin.behave("/hop.ts", redirect=f"http://localhost:{port_of(origin)}{SEG}")
    status, body = await raw(
        gw, request("GET", gw.mint(origin.base_url + "/hop.ts").removeprefix(gw.base_url))
    )
    assert (status, body) == (403, b"upstream host not allowed\n")
    assert [r.path_qs for r in origin.requests] == ["/hop.ts"]


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:6379/_"]
)
async def test_a_redirect_to_another_scheme_is_not_followed(target, make_gateway, origin):
    gw = await make_gateway()
    origin.behave("/hop.ts", redirect=target)
    status, body = await raw(
        gw, request("GET", gw.mint(origin.base_url + "/hop.ts").removeprefix(gw.base_url))
    )
    assert 400 <= status < 600 and status != 500 and one_line(body), (status, body)
    assert [r.path_qs for r in origin.requests] == ["/hop.ts"]


async def test_garbage_instead_of_http_does_not_hurt_the_next_client(gw, origin, media):
    for junk in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET\r\n\r\n",
        b"\xff" * 5000 + b"\r\n\r\n",
    ):
        host, port = gw.base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(junk)
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)
        writer.close()
    url = gw.mint(origin.base_url + SEG)
    status, body = await raw(gw, request("GET", url.removeprefix(gw.base_url)))
    assert status == 200 and body == media.read(SEG)
