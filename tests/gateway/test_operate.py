"""Operating the gateway: readiness, request ids end to end, access logs, one egress."""

import asyncio
import json
import logging

import aiohttp
from aiohttp import web

from gateway.access_log import access_logging
from gateway.app import GATEWAY, create_app
from gateway.settings import Settings
from tests.support.redis_server import throwaway_redis


async def get(session, url, **kwargs) -> tuple[int, dict, bytes]:
    async with session.get(url, **kwargs) as response:
        return response.status, response.headers.copy(), await response.read()


async def test_readyz_reports_a_missing_redis_and_recovers(make_gateway, tmp_path):
    with throwaway_redis(tmp_path) as url:
        gw = await make_gateway(redis_url=url)
        async with aiohttp.ClientSession() as session:
            status, _, _ = await get(session, gw.base_url + "/readyz")
            assert status == 200
    async with aiohttp.ClientSession() as session:
        status, _, body = await get(session, gw.base_url + "/readyz")
        assert status == 503 and b"index unreachable" in body
        status, _, _ = await get(session, gw.base_url + "/healthz")
        assert status == 200  # alive, just not ready


async def test_a_request_id_is_returned_and_sent_upstream(make_gateway, origin):
    gw = await make_gateway()
    async with aiohttp.ClientSession() as session:
        _, headers, _ = await get(
            session,
            gw.mint(origin.base_url + "/ts/seg_000.ts"),
            headers={"X-Request-Id": "abc-123"},
        )
        _, generated, _ = await get(session, gw.mint(origin.base_url + "/ts/seg_001.ts"))
    assert headers["X-Request-Id"] == "abc-123"
    assert origin.requests[0].headers["X-Request-Id"] == "abc-123"
    assert len(generated["X-Request-Id"]) == 32
    assert origin.requests[1].headers["X-Request-Id"] == generated["X-Request-Id"]


async def test_json_access_log_lines_name_no_token(origin, caplog, tmp_path):
    settings = Settings(cache_dir=tmp_path, secret="s" * 32, allow_private_upstreams=True)
    app = create_app(settings)
    runner = web.AppRunner(app, **access_logging("json"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    link = app[GATEWAY].links.mint(origin.base_url + "/ts/seg_000.ts?sig=secret")
    url = base + link[len(app[GATEWAY].links.public_base) :]
    try:
        with caplog.at_level(logging.INFO, logger="gateway.access"):
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                await response.read()
                request_id = response.headers["X-Request-Id"]
            await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    record = json.loads(lines[-1])
    assert record["route"] == "p" and record["file"] == "seg_000.ts" and record["status"] == 200
    assert record["request_id"] == request_id and record["cache"] == "MISS"
    token = url.split("/p/", 1)[1].split("/", 1)[0]
    assert token not in lines[-1] and "secret" not in lines[-1]


class ForwardProxy:
    """A minimal HTTP forward proxy on loopback that records what went through it."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.url = ""

    async def start(self) -> None:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self._server = server
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _client(self, reader, writer) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = line.split(" ", 2)
            self.seen.append(target)
            headers = {}
            for header in header_lines:
                if ":" in header:
                    name, value = header.split(":", 1)
                    if name.lower() not in ("proxy-connection", "connection", "host"):
                        headers[name] = value.strip()
            async with (
                aiohttp.ClientSession() as session,
                session.request(
                    method,
                    aiohttp.client.URL(target, encoded=True),
                    headers=headers,
                    allow_redirects=False,
                ) as upstream,
            ):
                body = await upstream.read()
                writer.write(f"HTTP/1.1 {upstream.status} X\r\n".encode())
                for name, value in upstream.headers.items():
                    if name.lower() not in (
                        "transfer-encoding",
                        "connection",
                        "content-length",
                        "content-encoding",
                    ):
                        writer.write(f"{name}: {value}\r\n".encode())
                writer.write(f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
                writer.write(body)
                await writer.drain()
        finally:
            writer.close()


async def test_extraction_and_fetches_leave_through_one_egress_proxy(make_gateway, origin):
    proxy = ForwardProxy()
    await proxy.start()
    try:
        gw = await make_gateway(api_key="k", egress_proxy=proxy.url)
        origin.set_file(
            "/watch/egress.html",
            b'<html><title>e</title><video><source src="/ts/index.m3u8" type="application/x-mpegURL"></video></html>',
        )
        async with aiohttp.ClientSession() as session:
            status, _, body = await get(
                session,
                gw.base_url + "/resolve",
                params={"url": origin.base_url + "/watch/egress.html"},
                headers={"X-API-Key": "k"},
            )
            assert status == 200, body
            play = gw.base_url + json.loads(body)["play"].split("/", 3)[3].join(["/", ""])
            status, _, _ = await get(session, play)
            assert status == 200
            status, _, _ = await get(session, gw.mint(origin.base_url + "/ts/seg_000.ts"))
            assert status == 200
    finally:
        await proxy.close()
    through = [u.split(origin.base_url, 1)[-1] for u in proxy.seen]
    assert "/watch/egress.html" in through  # yt-dlp's page fetch
    assert "/ts/index.m3u8" in through and "/ts/seg_000.ts" in through  # the gateway's fetches
    direct = [r.path_qs for r in origin.requests]
    assert sorted(direct) == sorted(through)  # nothing reached the origin around the proxy
