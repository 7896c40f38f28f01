"""Answers the connection writes itself after a wait: a cold miss streamed as it is fetched,
a manifest fetched and rewritten, an upstream error. Byte for byte what the full aiohttp
stack answers, one upstream fetch per object, and the connection stays usable after."""

import asyncio
import logging

from aiohttp import web

from gateway.fast_lane import FastLane
from gateway.lane_connection import FAST_LANE, LANE_WAITS, GatewayRunner
from gateway.lane_waits import WaitedAnswers
from gateway.metrics import Metrics
from gateway.middleware import FrontDoor
from gateway.settings import Settings
from tests.support.raw_http import Connection, Reply, comparable, metric, path_of

SEG = "/ts/seg_000.ts"
PLAYLIST = "/ts/index.m3u8"


async def waited_answers(base_url: str) -> float:
    return await metric(base_url, "gateway_lane_waited_answers_total")


async def test_waited_answers_are_exactly_the_full_stacks(make_gateway, origin, media):
    origin.behave("/err/missing.ts", status=404)
    origin.behave("/err/busy.ts", status=503, headers={"Retry-After": "7"})
    origin.behave("/chunked/seg.ts", chunked=True, body=media.read(SEG))
    lane = await make_gateway(prefetch_segments=0)
    reference = await make_gateway(fast_lane=False, prefetch_segments=0)

    async def ask(gw) -> list[Reply]:
        connection = await Connection.open(gw.base_url)
        replies = []
        for path in (SEG, PLAYLIST, "/err/missing.ts", "/err/busy.ts", "/chunked/seg.ts"):
            replies.append(await connection.get(path_of(gw, origin.base_url + path)))
        replies.append(await connection.get(path_of(gw, origin.base_url + "/ts/seg_001.ts"),
                                            "X-Request-Id: waited-1"))  # fmt: skip
        connection.close()
        return [comparable(reply) for reply in replies]

    before = await waited_answers(lane.base_url)
    from_lane = await ask(lane)
    assert await waited_answers(lane.base_url) - before == len(from_lane)
    from_reference = await ask(reference)
    assert await waited_answers(reference.base_url) == 0

    assert [r.status for r in from_lane] == [200, 200, 404, 503, 200, 200]
    assert from_lane == from_reference
    segment, playlist, missing, busy, chunked, _ = from_lane
    assert segment.body == media.read(SEG) and segment.headers["X-Cache"] == "MISS"
    assert segment.headers["Content-Length"] == str(len(segment.body))
    assert playlist.body.startswith(b"#EXTM3U") and b"seg_003.ts" in playlist.body
    assert missing.body == b"upstream answered 404\n"
    assert busy.headers["Retry-After"] == "7"
    assert chunked.headers["Transfer-Encoding"] == "chunked"
    assert chunked.body == media.read(SEG)
    # Each object was fetched once per gateway, whichever way it was answered.
    assert origin.count(SEG) == 2 and origin.count(PLAYLIST) == 2
    ids = [r.headers.get("X-Request-Id") for r in origin.requests if r.path_qs == "/ts/seg_001.ts"]
    assert ids == ["waited-1", "waited-1"]


async def test_clients_that_join_a_streaming_miss_share_one_fetch(make_gateway, origin, media):
    body = media.read(SEG)
    origin.behave(SEG, drip=(len(body) // 8, 0.05))
    gw = await make_gateway()
    path = path_of(gw, origin.base_url + SEG)
    connections = [await Connection.open(gw.base_url) for _ in range(5)]
    for connection in connections:
        connection.send(path)
        await asyncio.sleep(0.03)  # joining while the body arrives
    replies = await asyncio.gather(*(c.reply() for c in connections))
    for connection in connections:
        connection.close()
    assert [r.body == body for r in replies] == [True] * 5
    assert [r.headers["X-Cache"] for r in replies] == ["MISS"] + ["COALESCED"] * 4
    assert origin.count(SEG) == 1


async def test_a_request_sent_behind_a_streaming_miss_is_answered_after_it(
    make_gateway, origin, media
):
    body = media.read(SEG)
    origin.behave(SEG, drip=(len(body) // 4, 0.1))
    gw = await make_gateway()
    connection = await Connection.open(gw.base_url)
    connection.send(path_of(gw, origin.base_url + SEG))
    await asyncio.sleep(0.1)  # the miss is streaming when the next request arrives
    connection.send(path_of(gw, origin.base_url + PLAYLIST))
    first, second = await connection.reply(), await connection.reply()
    assert first.body == body
    assert second.body.startswith(b"#EXTM3U")
    again = await connection.get(path_of(gw, origin.base_url + SEG))
    assert (again.headers["X-Cache"], again.body) == ("HIT", body)
    connection.close()


async def test_a_miss_slower_than_the_keep_alive_timeout_is_not_cut(make_gateway, origin, media):
    body = media.read(SEG)
    origin.behave(SEG, delay_headers=0.4, drip=(len(body) // 4, 0.2))
    gw = await make_gateway(runner_options={"keepalive_timeout": 0.2})
    connection = await Connection.open(gw.base_url)
    reply = await connection.get(path_of(gw, origin.base_url + SEG))
    assert reply.body == body
    # Idle after the answer, the connection is closed at the keep-alive timeout.
    assert await asyncio.wait_for(connection.reader.read(), 5) == b""
    connection.close()


async def test_a_failed_fill_cuts_the_body_short_and_the_gateway_serves_on(
    make_gateway, origin, media
):
    body = media.read(SEG)
    origin.behave(SEG, reset_after=len(body) // 2, drip=(len(body) // 8, 0.02))
    gw = await make_gateway()
    connection = await Connection.open(gw.base_url)
    connection.send(path_of(gw, origin.base_url + SEG))
    head = await asyncio.wait_for(connection.reader.readuntil(b"\r\n\r\n"), 5)
    assert f"Content-Length: {len(body)}".encode() in head
    received = await asyncio.wait_for(connection.reader.read(), 5)
    assert len(received) < len(body)  # then the connection ends: a truncated body
    connection.close()
    origin.unbehave(SEG)
    connection = await Connection.open(gw.base_url)
    assert (await connection.get(path_of(gw, origin.base_url + SEG))).body == body
    connection.close()


async def test_a_streaming_miss_finishes_when_the_gateway_shuts_down(make_gateway, origin, media):
    body = media.read(SEG)
    origin.behave(SEG, drip=(len(body) // 5, 0.1))
    gw = await make_gateway()
    connection = await Connection.open(gw.base_url)
    connection.send(path_of(gw, origin.base_url + SEG))
    await asyncio.sleep(0.15)
    assert gw.runner is not None
    stopping = asyncio.create_task(gw.runner.cleanup())
    reply = await connection.reply()
    await stopping
    assert reply.body == body
    connection.close()


class _OnlyFromFile:
    """Decisions whose every outcome is a cached object only a file response can send."""

    def route(self, raw: str) -> object:
        return raw

    async def outcome(self, raw: str, route: object, conditions: object) -> object:
        await asyncio.sleep(0.05)
        return object()

    def hit_answer(self, hit: object, conditions: object) -> None:
        return None

    def count_streamed(self, joined: object, sent: int) -> None:
        raise AssertionError("nothing is streamed")


async def test_what_the_lane_cannot_send_is_answered_by_the_full_stack_in_order(tmp_path):
    settings = Settings(secret="test-secret-0123456789abcdef", cache_dir=tmp_path)
    front = FrontDoor(settings, Metrics())
    app = web.Application(middlewares=[front.middleware])
    seen: list[str] = []

    async def full_stack(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text=f"full stack: {request.path}")

    app.router.add_get("/p/{tail:.*}", full_stack)
    lane = FastLane(lambda *_: None, front)
    app[FAST_LANE] = lane
    app[LANE_WAITS] = WaitedAnswers(_OnlyFromFile(), lane)  # type: ignore[arg-type]
    runner = GatewayRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        connection = await Connection.open(f"http://127.0.0.1:{port}")
        connection.send("/p/first")
        await asyncio.sleep(0.01)  # sent while the lane waits: held back, then answered after
        connection.send("/p/second")
        first, second = await connection.reply(), await connection.reply()
        connection.close()
    finally:
        await runner.cleanup()
    assert (first.body, second.body) == (b"full stack: /p/first", b"full stack: /p/second")
    assert seen == ["/p/first", "/p/second"]


async def test_a_refused_request_is_logged_as_the_full_stack_logs_it(make_gateway, origin, caplog):
    origin.behave("/err/gone.ts", status=404)
    lane = await make_gateway()
    reference = await make_gateway(fast_lane=False)
    with caplog.at_level(logging.INFO, logger="gateway"):
        for gw in (lane, reference):
            connection = await Connection.open(gw.base_url)
            path = path_of(gw, origin.base_url + "/err/gone.ts?sig=SECRET-123")
            assert (await connection.get(path)).status == 404
            connection.close()
    refusals = [r.getMessage() for r in caplog.records if "-> 404" in r.getMessage()]
    assert len(refusals) == 2
    assert refusals[0] == refusals[1]
    assert refusals[0].startswith("GET /p/") and refusals[0].endswith("upstream answered 404")


async def test_answers_without_a_body_after_a_wait(make_gateway, origin, media):
    """A 304 and an X-Accel-Redirect answer, which have no body, made after an index lookup.
    On uvloop (the `[uvloop]` run) an answer is written whole, not in slices."""

    async def answers(gw) -> list[Reply]:
        connection = await Connection.open(gw.base_url)
        path = path_of(gw, origin.base_url + SEG)
        await connection.get(path)  # the miss that caches it
        waited = await waited_answers(gw.base_url)
        gw.state.cache._hot.clear()  # not confirmed lately: the index is asked
        hit = await connection.get(path)
        validator = f"If-None-Match: {hit.headers.get('ETag')}"
        gw.state.cache._hot.clear()
        replies = [hit, await connection.get(path, validator)]
        assert await waited_answers(gw.base_url) - waited == 2  # both by the lane
        replies.append(await connection.get(path))  # the connection is still usable
        connection.close()
        return replies

    hit, not_modified, again = await answers(await make_gateway(prefetch_segments=0))
    accel_replies = await answers(
        await make_gateway(prefetch_segments=0, accel_redirect_prefix="/_cache/")
    )
    assert hit.status == 200 and hit.body == media.read(SEG)
    assert not_modified.status == 304 and not_modified.body == b""
    assert again.status == 200 and again.body == media.read(SEG)
    for reply in accel_replies:
        assert reply.status == 200 and reply.body == b""
        assert reply.headers["X-Accel-Redirect"].startswith("/_cache/objects/")
