"""The fast lane: answers from memory written by the connection itself, byte for byte what
the full aiohttp stack answers, and never for a request it cannot judge."""

import asyncio
import gzip
import json
import logging
import re
import socket

import pytest

from gateway.answers import Conditions
from gateway.fast_lane import parse_head, without_request_id
from gateway.serve import accepts_gzip
from tests.support.raw_http import Connection, Reply, comparable, metric, path_of

SEG = "/ts/seg_001.ts"
BIG = "/big/index.m3u8"


def big_playlist(segments: int = 400) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for n in range(segments):
        lines += ["#EXTINF:2.000,", f"seg_{n:05d}.ts"]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


# -- reading the request ---------------------------------------------------------------------


def test_a_plain_get_is_read_with_the_headers_its_answer_depends_on():
    request = parse_head(
        b"GET /p/tok/a.ts?x=1 HTTP/1.1\r\nHost: gw\r\nRange: bytes=0-99\r\n"
        b'If-None-Match: "e"\r\nAccept-Encoding: gzip\r\nOrigin: https://site\r\n'
        b"X-Request-Id: abc-1\r\nUser-Agent: VLC/3\r\nConnection: Keep-Alive\r\n\r\n"
    )
    assert request is not None
    assert request.target == "/p/tok/a.ts?x=1"
    assert request.conditions == Conditions('"e"', "bytes=0-99", "gzip")
    assert (request.origin, request.request_id, request.user_agent) == (
        "https://site",
        "abc-1",
        "VLC/3",
    )


@pytest.mark.parametrize(
    "data",
    [
        b"HEAD /p/t/a.ts HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"POST /p/t/a.ts HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.0\r\nHost: gw\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nHost: gw\r\n",  # not finished
        b"GET /p/t/a.ts HTTP/1.1\r\nHost: gw\r\n\r\nGET /p/t/b.ts HTTP/1.1\r\n\r\n",  # pipelined
        b"GET /p/t/a b.ts HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /p/t/\xc3\xa9.ts HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nHost gw\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nHost: gw\r\n folded\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nHost: gw\r\nHost: other\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nHost: g\x00w\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nHost: gw\nX: y\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nHost: gw\rX: y\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nHost: g\x7fw\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nHost: gw\r\n: empty-name\r\n\r\n",
        b"GET /p/t/\x7f.ts HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nUser-Agent: no-host\r\n\r\n",  # RFC 9112 3.2: a 400
        b"GET /p/t/a.ts HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET /p/t/a.ts HTTP/1.1\r\nIf-Modified-Since: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n",
        b'GET /p/t/a.ts HTTP/1.1\r\nIf-Range: "e"\r\nRange: bytes=0-1\r\n\r\n',
    ],
)
def test_requests_the_lane_cannot_judge_go_to_the_full_stack(data: bytes):
    assert parse_head(data) is None


def test_requests_that_differ_only_in_their_request_id_are_remembered_as_one():
    # nginx in front (nginx/hls-gateway.conf) sends a new X-Request-Id with every request.
    def from_nginx(request_id: bytes, spelling: bytes = b"X-Request-Id") -> bytes:
        return (
            b"GET /p/tok/a.ts HTTP/1.1\r\nHost: gw\r\n"
            + spelling
            + b": "
            + request_id
            + b"\r\nX-Forwarded-Proto: http\r\n\r\n"
        )

    first, first_id = without_request_id(from_nginx(b"0a1b"))
    second, second_id = without_request_id(from_nginx(b"2c3d4e"))
    assert first == second
    assert (first_id, second_id) == (b" 0a1b", b" 2c3d4e")
    assert first.count(b"\r\n") == from_nginx(b"x").count(b"\r\n")  # the lines stay
    lower, lower_id = without_request_id(from_nginx(b"5f", b"x-request-id"))
    assert lower_id == b" 5f" and lower != first  # the name is kept as it was spelled
    # Any other spelling is remembered whole, as any other request.
    other = from_nginx(b"6a", b"X-REQUEST-ID")
    assert without_request_id(other) == (other, None)
    plain = b"GET /p/tok/a.ts HTTP/1.1\r\nHost: gw\r\n\r\n"
    assert without_request_id(plain) == (plain, None)
    unfinished = b"GET /p/tok/a.ts HTTP/1.1\r\nX-Request-Id: 9d"
    assert without_request_id(unfinished) == (unfinished, None)
    # The first field only: a second one stays, so the request is still seen as having two.
    twice = from_nginx(b"7b").replace(b"X-Forwarded", b"X-Request-Id: 8c\r\nX-Forwarded")
    cut, cut_id = without_request_id(twice)
    assert cut_id == b" 7b" and b"X-Request-Id: 8c\r\n" in cut


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("x-gzip", True),
        ("", False),
        ("identity", False),
        ("deflate, br", False),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=nonsense", False),
        ("*", False),
    ],
)
def test_gzip_is_sent_only_where_accept_encoding_admits_it(value: str, accepted: bool):
    assert accepts_gzip(value) is accepted


async def fast_answers(base_url: str) -> float:
    return await metric(base_url, "gateway_fast_answers_total")


async def warmed(make_gateway, origin, **settings):
    """A gateway with the big playlist rewritten and cached, and a segment in the RAM tier."""
    origin.set_file(BIG, big_playlist())
    gw = await make_gateway(**settings)
    connection = await Connection.open(gw.base_url)
    for path in (BIG, SEG, SEG, SEG):
        assert (await connection.get(path_of(gw, origin.base_url + path))).status == 200
    connection.close()
    return gw


async def test_the_lane_answers_exactly_as_the_full_stack(make_gateway, origin):
    lane = await warmed(make_gateway, origin)
    reference = await warmed(make_gateway, origin, fast_lane=False)
    before = await fast_answers(lane.base_url)

    async def ask(gw) -> list[Reply]:
        connection = await Connection.open(gw.base_url)
        playlist, segment = path_of(gw, origin.base_url + BIG), path_of(gw, origin.base_url + SEG)
        plain = await connection.get(segment)
        own = {"ETag": plain.headers["ETag"], "Last-Modified": plain.headers["Last-Modified"]}
        zipped = await connection.get(playlist, "Accept-Encoding: gzip, deflate")
        replies = [
            plain,
            await connection.get(playlist),
            zipped,
            await connection.get(playlist, "Accept-Encoding: gzip;q=0"),
            await connection.get(playlist, f"If-None-Match: {zipped.headers['ETag']}"),
            await connection.get(segment, "Range: bytes=100-299"),
            await connection.get(segment, "Range: bytes=-188"),
            await connection.get(segment, "Range: bytes=99999999-"),
            await connection.get(segment, f"If-None-Match: {own['ETag']}"),
            await connection.get(segment, "Origin: https://player.example"),
            await connection.get(segment, "X-Request-Id: trace-42", "Connection: keep-alive"),
        ]
        connection.close()
        return [comparable(reply, own) for reply in replies]

    from_lane, from_reference = await ask(lane), await ask(reference)
    assert [r.status for r in from_lane] == [200, 200, 200, 200, 304, 206, 206, 416, 304, 200, 200]
    assert from_lane == from_reference
    assert from_lane[-1].headers.get("X-Request-Id") is None  # compared above without it
    assert await fast_answers(lane.base_url) - before == len(from_lane)
    assert await fast_answers(reference.base_url) == 0


async def test_a_big_playlist_goes_out_gzipped_once_compressed_with_its_own_validator(
    make_gateway, origin
):
    origin.set_file(BIG, big_playlist())
    gw = await make_gateway()
    path = path_of(gw, origin.base_url + BIG)
    connection = await Connection.open(gw.base_url)
    first = await connection.get(path, "Accept-Encoding: gzip")  # a miss, through aiohttp
    again = await connection.get(path, "Accept-Encoding: gzip")  # a hit, through the lane
    plain = await connection.get(path)
    connection.close()
    assert first.headers["X-Cache"] == "MISS" and again.headers["X-Cache"] == "HIT"
    for reply in (first, again):
        assert reply.headers["Content-Encoding"] == "gzip"
        assert reply.headers["Vary"] == "Accept-Encoding"
        assert reply.headers["ETag"] == "W/" + plain.headers["ETag"]
        assert gzip.decompress(reply.body) == plain.body
        assert len(reply.body) < len(plain.body) / 4
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"
    assert plain.body.startswith(b"#EXTM3U") and plain.body.count(b"seg_") == 400


async def test_pipelined_and_split_requests_are_answered_whole_and_in_order(
    make_gateway, origin, media
):
    gw = await warmed(make_gateway, origin)
    playlist, segment = path_of(gw, origin.base_url + BIG), path_of(gw, origin.base_url + SEG)
    expected = (media.root / SEG.lstrip("/")).read_bytes()
    connection = await Connection.open(gw.base_url)
    connection.send(segment)
    connection.send(playlist)
    connection.send(segment, "Range: bytes=0-9")
    replies = [await connection.reply() for _ in range(3)]
    assert [r.body for r in replies] == [expected, big_playlist(), expected[:10]]

    request = f"GET {segment} HTTP/1.1\r\nHost: gateway.test\r\n\r\n".encode()
    for cut in (10, len(request) - 3, len(request) - 1):
        connection.writer.write(request[:cut])
        await connection.writer.drain()
        await asyncio.sleep(0.05)
        connection.writer.write(request[cut:])
        assert (await connection.reply()).body == expected

    # Half a request, then bytes that on their own would look like a whole one: they are
    # the rest of the first (a header value here), never a request of their own.
    connection.writer.write(f"GET {segment} HTTP/1.1\r\nX-Note: ".encode())
    await connection.writer.drain()
    await asyncio.sleep(0.05)
    connection.writer.write(f"GET {playlist} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    assert (await connection.reply()).body == expected
    connection.close()


async def test_a_request_inside_a_body_is_never_answered(make_gateway, origin, media):
    gw = await warmed(make_gateway, origin)
    playlist, segment = path_of(gw, origin.base_url + BIG), path_of(gw, origin.base_url + SEG)
    smuggled = f"GET {playlist} HTTP/1.1\r\nHost: gateway.test\r\n\r\n".encode()
    connection = await Connection.open(gw.base_url)
    connection.send(segment, f"Content-Length: {len(smuggled)}", method="POST")
    await connection.writer.drain()
    await asyncio.sleep(0.05)
    connection.writer.write(smuggled)  # the body, sent on its own as a request would be
    assert (await connection.reply()).status == 405
    after = await connection.get(segment)
    assert after.headers["Content-Type"] == "video/mp2t"
    assert after.body == (media.root / SEG.lstrip("/")).read_bytes()
    connection.close()


async def test_a_client_that_does_not_read_gets_back_pressure_and_every_answer_whole(
    make_gateway, origin, media
):
    gw = await warmed(make_gateway, origin)
    segment = path_of(gw, origin.base_url + SEG)
    expected = (media.root / SEG.lstrip("/")).read_bytes()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = gw.base_url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    connection = Connection(*await asyncio.open_connection(sock=sock))
    before = await fast_answers(gw.base_url)
    # Far more than the kernel's socket buffers hold, sent one by one without reading.
    count = 24 * 1024 * 1024 // len(expected)
    for _ in range(count):
        connection.send(segment)
        await connection.writer.drain()
        await asyncio.sleep(0.001)  # one request per read on the gateway's side
    await asyncio.sleep(0.3)
    for _ in range(count):
        assert (await connection.reply()).body == expected
    connection.close()
    # Once the socket stopped taking bytes (a few MB of kernel buffers), the full stack
    # (which waits for the socket to drain) answered the rest: the lane never queues
    # answers in the gateway's memory.
    assert await fast_answers(gw.base_url) - before < count / 2


async def test_lane_answers_are_in_the_access_log(make_gateway, origin, caplog):
    gw = await warmed(make_gateway, origin, access_log="json")
    segment = path_of(gw, origin.base_url + SEG)
    connection = await Connection.open(gw.base_url)
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        reply = await connection.get(segment, "X-Request-Id: lane-log-1", "User-Agent: test/1")
    connection.close()
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]
    mine = [r for r in records if r["request_id"] == "lane-log-1"]
    assert len(mine) == 1
    assert mine[0]["status"] == 200 and mine[0]["cache"] == "HIT"
    assert mine[0]["route"] == "p" and mine[0]["file"] == "seg_001.ts"
    assert mine[0]["user_agent"] == "test/1"
    assert mine[0]["bytes"] > len(reply.body)  # headers and body, as aiohttp counts them
    assert reply.headers["X-Request-Id"] == "lane-log-1"


async def test_behind_nginx_each_request_keeps_its_own_request_id(make_gateway, origin):
    gw = await warmed(make_gateway, origin)
    reference = await warmed(make_gateway, origin, fast_lane=False)
    before = await fast_answers(gw.base_url)
    replies = []
    for gateway in (gw, reference):
        connection = await Connection.open(gateway.base_url)
        segment = path_of(gateway, origin.base_url + SEG)
        ids = [f"{n:032x}" for n in range(1, 6)]
        for request_id in ids:
            reply = await connection.get(
                segment, "X-Forwarded-For: 127.0.0.1", f"X-Request-Id: {request_id}"
            )
            assert (reply.status, reply.headers["X-Request-Id"]) == (200, request_id)
        # Remembered without its id, a request is still refused for a bad one.
        reply = await connection.get(
            segment, "X-Forwarded-For: 127.0.0.1", "X-Request-Id: bad\x01id"
        )
        replies.append(reply.status)
        connection.close()
    assert await fast_answers(gw.base_url) - before == len(ids)
    assert replies[0] == replies[1] == 400


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_on_asyncios_loop_a_big_hit_is_left_to_the_full_stack_and_counted_once(
    make_gateway, origin
):
    # asyncio's transports copy what the socket does not take at once: the full stack sends
    # big bodies in slices instead, so the lane leaves them alone (uvloop is tested by the
    # benches, where the lane sends them).
    body = bytes(range(256)) * 4096  # 1 MB
    origin.set_file("/big/seg.ts", body)
    gw = await make_gateway()
    path = path_of(gw, origin.base_url + "/big/seg.ts")
    connection = await Connection.open(gw.base_url)
    for _ in range(3):  # the miss, then hits until the RAM tier holds it
        assert (await connection.get(path)).body == body

    async def hits() -> float:
        text = (await connection.get("/metrics")).body.decode()
        found = re.search(
            r'^gateway_cache_results_total\{kind="segment",state="HIT"\} (\S+)$', text, re.M
        )
        return float(found.group(1))

    lane_before, hits_before = await fast_answers(gw.base_url), await hits()
    for _ in range(4):
        reply = await connection.get(path)
        assert (reply.status, reply.headers["X-Cache"], reply.body) == (200, "HIT", body)
    assert await hits() - hits_before == 4
    assert await fast_answers(gw.base_url) == lane_before
    connection.close()
