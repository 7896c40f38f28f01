"""The gateway's own page mints a link and plays it with the bundled player, no CDN."""

import asyncio
import json
import struct

import aiohttp
import pytest

from tests.support.players import PAGE_DIR, chromium_available

pytestmark = pytest.mark.e2e


async def test_the_page_is_served_with_its_players_and_can_be_turned_off(make_gateway):
    gw = await make_gateway()
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.base_url + "/") as response:
            page = await response.text()
        for script in ("static/hls.min.js", "static/dash.all.min.js", "static/app.js"):
            assert script in page
            async with session.get(f"{gw.base_url}/{script}") as response:
                assert response.status == 200 and len(await response.read()) > 1000
    off = await make_gateway(web_page=False)
    async with aiohttp.ClientSession() as session, session.get(off.base_url + "/") as response:
        assert response.status == 404


@pytest.mark.skipif(not chromium_available(), reason="chromium or the page's node_modules missing")
async def test_the_page_mints_a_link_and_plays_it_in_chromium(make_gateway, origin, tmp_path):
    gw = await make_gateway(api_key="page-key")
    shot = tmp_path / "page.png"
    process = await asyncio.create_subprocess_exec(
        "node",
        str(PAGE_DIR / "ui.mjs"),
        gw.base_url,
        origin.base_url + "/fmp4/index.m3u8",
        "page-key",
        str(shot),
        "45",
        cwd=PAGE_DIR,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["ok"], report
    assert "/p/" in report["link"] and report["link"].endswith("/index.m3u8")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (960, 800)
