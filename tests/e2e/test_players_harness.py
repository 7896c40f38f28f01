"""The player harness itself, without the gateway: it must see real playback and real failure.

A harness that always says "ok" would make every player test through the gateway worthless, so
each player is shown both a stream it can play and one it cannot.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.players import (
    chromium_available,
    play_in_browser,
    play_with_vlc,
    vlc_available,
)

pytestmark = pytest.mark.e2e

needs_vlc = pytest.mark.skipif(not vlc_available(), reason="cvlc (or its 'player' user) missing")
needs_chromium = pytest.mark.skipif(
    not chromium_available(), reason="chromium or the player page's node_modules missing"
)

_SOURCES = [
    "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac",
]  # fmt: skip


def _ffmpeg(args: list[str], cwd: Path) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *_SOURCES, *args],
        cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("harness-media")
    _ffmpeg(["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", "index.m3u8"],
            root / "hls")  # fmt: skip
    _ffmpeg(["-f", "dash", "-seg_duration", "1", "-use_template", "1", "-use_timeline", "0",
             "manifest.mpd"], root / "dash")  # fmt: skip
    return root


@web.middleware
async def _cors(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@pytest.fixture
async def media_url(streams: Path) -> AsyncIterator[str]:
    """Base URL of a CORS-enabled static server for the generated streams, on loopback only."""
    app = web.Application(middlewares=[_cors])
    app.router.add_static("/", streams)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Binding port 0 ourselves avoids the race of picking a free port and binding it later.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@needs_vlc
async def test_vlc_plays_hls(media_url):
    run = await play_with_vlc(f"{media_url}/hls/index.m3u8", timeout=60)
    assert run.ok, (run.errors, run.log[-4000:])
    assert run.exit_code == 0


@needs_vlc
async def test_vlc_fails_on_missing_playlist(media_url):
    run = await play_with_vlc(f"{media_url}/hls/missing.m3u8", timeout=60)
    assert not run.ok, run.log[-4000:]
    assert run.errors


@needs_chromium
async def test_hls_js_plays_hls(media_url):
    run = await play_in_browser(f"{media_url}/hls/index.m3u8", engine="hls.js", seconds=2)
    assert run.ok, (run.errors, run.log[-4000:])
    assert run.current_time >= 2


@needs_chromium
async def test_dash_js_plays_dash(media_url):
    run = await play_in_browser(f"{media_url}/dash/manifest.mpd", engine="dash.js", seconds=2)
    assert run.ok, (run.errors, run.log[-4000:])
    assert run.current_time >= 2


@needs_chromium
async def test_hls_js_fails_on_missing_playlist(media_url):
    run = await play_in_browser(f"{media_url}/hls/missing.m3u8", engine="hls.js", seconds=2)
    assert not run.ok, run.log[-4000:]
    assert any("fatal" in error for error in run.errors), run.errors
