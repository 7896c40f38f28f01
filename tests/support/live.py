"""Live origins for the tests.

`LiveEncoder`: ffmpeg encoding testsrc2 in real time (`-re`) into a sliding-window HLS
playlist inside the origin's media root, as a live packager would.

`LowLatencyOrigin`: an LL-HLS server on a clock. Parts are real fMP4 fragments made once
with ffmpeg; part `i` is published `i * PART_SECONDS` after start, two parts make a segment,
and the playlist implements blocking reload (`_HLS_msn`/`_HLS_part`) and preload hints as
RFC 8216bis describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tests.support.origin import SeenRequest

PART_SECONDS = 0.5
PARTS_PER_SEGMENT = 2


class LiveEncoder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                "ffmpeg", "-nostdin", "-v", "error", "-re",
                "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                "-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
                "-c:a", "aac", "-b:a", "64k",
                "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
                "-hls_flags", "delete_segments+temp_file",
                "-hls_segment_filename", str(self.directory / "seg_%05d.ts"),
                str(self.directory / "index.m3u8"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        playlist = self.directory / "index.m3u8"
        while time.monotonic() < deadline:
            if playlist.exists() and playlist.read_text().count("#EXTINF") >= 3:
                return
            if self._process.poll() is not None:
                raise RuntimeError("the live ffmpeg encoder exited")
            time.sleep(0.1)
        raise RuntimeError("the live encoder produced no playlist in time")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()


def make_parts(directory: Path, count: int = 16) -> tuple[bytes, list[bytes]]:
    """An init section and `count` fMP4 fragments of PART_SECONDS each, made with ffmpeg."""
    directory.mkdir(parents=True, exist_ok=True)
    seconds = count * PART_SECONDS
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=24:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-g", "12", "-keyint_min", "12", "-sc_threshold", "0",
            "-f", "hls", "-hls_time", str(PART_SECONDS), "-hls_playlist_type", "vod",
            "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
            "-hls_segment_filename", str(directory / "part_%03d.m4s"),
            str(directory / "parts.m3u8"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    parts = [p.read_bytes() for p in sorted(directory.glob("part_*.m4s"))]
    return (directory / "init.mp4").read_bytes(), parts


@dataclass
class LowLatencyOrigin:
    init: bytes
    fragments: list[bytes]
    requests: list[SeenRequest] = field(default_factory=list)
    base_url: str = ""
    started: float = 0.0
    _runner: web.AppRunner | None = None
    _published: asyncio.Condition = field(default_factory=asyncio.Condition)
    _clock: asyncio.Task[None] | None = None

    # -- the clock --------------------------------------------------------------------------
    def published_parts(self) -> int:
        return int((time.monotonic() - self.started) / PART_SECONDS) + 1

    def part_bytes(self, msn: int, part: int) -> bytes:
        index = msn * PARTS_PER_SEGMENT + part
        return self.fragments[index % len(self.fragments)]

    def segment_bytes(self, msn: int) -> bytes:
        return b"".join(self.part_bytes(msn, p) for p in range(PARTS_PER_SEGMENT))

    def is_published(self, msn: int, part: int) -> bool:
        return msn * PARTS_PER_SEGMENT + part < self.published_parts()

    def playlist(self) -> str:
        published = self.published_parts()
        complete = published // PARTS_PER_SEGMENT  # segments whose every part is out
        first = max(0, complete - 6)
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            "#EXT-X-TARGETDURATION:1",
            f"#EXT-X-PART-INF:PART-TARGET={PART_SECONDS}",
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            '#EXT-X-MAP:URI="init.mp4"',
        ]
        for msn in range(first, complete + 1):
            in_segment = min(PARTS_PER_SEGMENT, published - msn * PARTS_PER_SEGMENT)
            if msn >= complete - 2:
                for part in range(max(0, in_segment)):
                    lines.append(
                        f'#EXT-X-PART:DURATION={PART_SECONDS},URI="seg{msn}.part{part}.m4s"'
                        + (",INDEPENDENT=YES" if part == 0 else "")
                    )
            if msn < complete:
                lines += [f"#EXTINF:{PART_SECONDS * PARTS_PER_SEGMENT:.3f},", f"seg{msn}.m4s"]
        next_index = published
        msn, part = divmod(next_index, PARTS_PER_SEGMENT)
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="seg{msn}.part{part}.m4s"')
        lines.append(f'#EXT-X-RENDITION-REPORT:URI="../other/live.m3u8",LAST-MSN={complete}')
        return "\n".join(lines) + "\n"

    # -- serving ----------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ll/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        self.started = time.monotonic()
        self._clock = asyncio.create_task(self._tick())

    async def close(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
        if self._runner is not None:
            await self._runner.cleanup()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(PART_SECONDS / 5)
            async with self._published:
                self._published.notify_all()

    async def _wait_for(self, msn: int, part: int, limit: float) -> bool:
        async with self._published:
            try:
                await asyncio.wait_for(
                    self._published.wait_for(lambda: self.is_published(msn, part)), limit
                )
            except TimeoutError:
                return False
        return True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(SeenRequest(request.method, request.raw_path, request.headers))
        name = request.match_info["name"]
        if name == "live.m3u8":
            msn = request.query.get("_HLS_msn")
            if msn is not None:
                part = int(request.query.get("_HLS_part", "0"))
                # RFC 8216bis 6.2.5.2: wait up to three target durations, else 503.
                if not await self._wait_for(int(msn), part, 3.0):
                    return web.Response(status=503, text="not yet\n")
            return web.Response(
                text=self.playlist(),
                content_type="application/vnd.apple.mpegurl",
                headers={"Cache-Control": "no-cache"},
            )
        if name == "init.mp4":
            return web.Response(body=self.init, content_type="video/mp4")
        if name.startswith("seg") and name.endswith(".m4s"):
            stem = name[3:-4]
            msn_text, _, part_text = stem.partition(".part")
            msn = int(msn_text)
            if part_text:
                # A preload hint is requested before its part exists: hold it, then send it.
                if not await self._wait_for(msn, int(part_text), 3.0):
                    return web.Response(status=404, text="no such part\n")
                return web.Response(
                    body=self.part_bytes(msn, int(part_text)), content_type="video/mp4"
                )
            if not self.is_published(msn, PARTS_PER_SEGMENT - 1):
                return web.Response(status=404, text="no such segment\n")
            return web.Response(body=self.segment_bytes(msn), content_type="video/mp4")
        return web.Response(status=404, text="not found\n")

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.requests if r.path_qs.startswith(prefix))
