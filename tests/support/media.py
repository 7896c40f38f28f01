"""Real media, made once per test session with ffmpeg: a few seconds of testsrc2 and a tone.

Layout under the root (every playlist refers to its files relatively):
    ts/index.m3u8      MPEG-TS segments seg_000.ts…
    fmp4/index.m3u8    fMP4: init.mp4 + seg_000.m4s…
    aes/index.m3u8     AES-128 TS segments, key at aes/key.bin
    master/master.m3u8 two video variants (v0/, v1/) and an audio rendition (audio/)
    dash/manifest.mpd  DASH, SegmentTemplate with $Number$, video and audio
    dash-tl/manifest.mpd  DASH, SegmentTemplate with a SegmentTimeline ($Time$-free, $Number$)
    dash-sb/manifest.mpd  one file per track with a global sidx, as a SegmentList of byte ranges
    dash-sb/ondemand.mpd  the same files as SegmentBase@indexRange (on-demand profile)
    dash-mp/manifest.mpd  two Periods over dash/'s segments, BaseURLs at three levels
    progressive.mp4    one faststart MP4 file
    long/faststart.mp4 30 s, H.264 (with B-frames) + AAC, moov first
    long/moov-last.mp4 the same, moov after the media data
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SECONDS = 4
KEY = bytes(range(16))
IV = "000102030405060708090a0b0c0d0e0f"

_SOURCES = [
    "-f",
    "lavfi",
    "-i",
    f"testsrc2=size=320x180:rate=25:duration={SECONDS}",
    "-f",
    "lavfi",
    "-i",
    f"sine=frequency=440:sample_rate=48000:duration={SECONDS}",
]
LONG_SECONDS = 30
_LONG_SOURCES = [
    "-f",
    "lavfi",
    "-i",
    f"testsrc2=size=320x180:rate=25:duration={LONG_SECONDS}",
    "-f",
    "lavfi",
    "-i",
    f"sine=frequency=440:sample_rate=48000:duration={LONG_SECONDS}",
]
_VIDEO = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p",
    "-g",
    "25",
    "-keyint_min",
    "25",
    "-sc_threshold",
    "0",
    "-b:v",
    "300k",
]
_AUDIO = ["-c:a", "aac", "-b:a", "64k"]
_HLS = ["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", "-hls_list_size", "0"]
_DASH = ["-f", "dash", "-seg_duration", "1"]


@dataclass(frozen=True)
class Media:
    root: Path

    def read(self, path: str) -> bytes:
        return (self.root / path.lstrip("/")).read_bytes()


def _ffmpeg(args: Sequence[str], cwd: Path) -> None:
    sources = _SOURCES
    if args[0] == "long":
        # Progressive files as sites serve them: keyframes every 2 s, B-frames (so an edit
        # list and composition offsets), more than a few segments long.
        sources, args = _LONG_SOURCES, args[1:]
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", *sources, *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {result.stderr.strip()[-500:]}")


def _jobs(root: Path) -> list[list[str]]:
    for directory in (
        "ts",
        "fmp4",
        "aes",
        "master",
        "dash",
        "dash-tl",
        "dash-sb",
        "dash-mp",
        "long",
    ):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "aes" / "key.bin").write_bytes(KEY)
    (root / "aes" / "keyinfo").write_text(f"key.bin\n{root / 'aes' / 'key.bin'}\n{IV}\n")
    both = ["-map", "0:v", "-map", "1:a", *_VIDEO, *_AUDIO]
    long_mp4 = [
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "50",
        "-b:v",
        "300k",
        *_AUDIO,
    ]
    return [
        [*both, *_HLS, "-hls_segment_filename", "ts/seg_%03d.ts", "ts/index.m3u8"],
        [
            *both,
            *_HLS,
            "-hls_segment_type",
            "fmp4",
            "-hls_fmp4_init_filename",
            "init.mp4",
            "-hls_segment_filename",
            "fmp4/seg_%03d.m4s",
            "fmp4/index.m3u8",
        ],
        [
            *both,
            *_HLS,
            "-hls_key_info_file",
            "aes/keyinfo",
            "-hls_segment_filename",
            "aes/seg_%03d.ts",
            "aes/index.m3u8",
        ],
        [
            "-map",
            "0:v",
            "-map",
            "0:v",
            "-map",
            "1:a",
            *_VIDEO,
            "-s:v:1",
            "160x90",
            "-b:v:1",
            "120k",
            *_AUDIO,
            *_HLS,
            "-master_pl_name",
            "master.m3u8",
            "-var_stream_map",
            "v:0,agroup:aud,name:v0 v:1,agroup:aud,name:v1 a:0,agroup:aud,name:audio,default:yes",
            "-hls_segment_filename",
            "master/%v/seg_%03d.ts",
            "master/%v/index.m3u8",
        ],
        [
            *both,
            *_DASH,
            "-use_template",
            "1",
            "-use_timeline",
            "0",
            "-init_seg_name",
            "init-$RepresentationID$.m4s",
            "-media_seg_name",
            "chunk-$RepresentationID$-$Number%05d$.m4s",
            "dash/manifest.mpd",
        ],
        [
            *both,
            *_DASH,
            "-use_template",
            "1",
            "-use_timeline",
            "1",
            "dash-tl/manifest.mpd",
        ],
        [
            *both,
            *_DASH,
            "-single_file",
            "1",
            "-global_sidx",
            "1",
            "-single_file_name",
            "track-$RepresentationID$.mp4",
            "dash-sb/manifest.mpd",
        ],
        [*both, "-movflags", "+faststart", "progressive.mp4"],
        ["long", *long_mp4, "-movflags", "+faststart", "long/faststart.mp4"],
        ["long", *long_mp4, "long/moov-last.mp4"],
    ]


def make_media(root: Path) -> Media:
    root.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(_ffmpeg, job, root) for job in _jobs(root)]:
            future.result()
    (root / "aes" / "keyinfo").unlink()
    _write_on_demand_mpd(root / "dash-sb")
    _write_multi_period_mpd(root)
    return Media(root)


def _boxes(data: bytes) -> list[tuple[str, int, int]]:
    """Top-level ISO BMFF boxes: (type, offset, size)."""
    found, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        if size < 8:
            break
        found.append((kind, offset, size))
        offset += size
    return found


def _write_on_demand_mpd(directory: Path) -> None:
    """SegmentBase@indexRange over the single-file tracks: init = up to moov, index = sidx."""
    manifest = (directory / "manifest.mpd").read_text()

    def segment_base(match: re.Match[str]) -> str:
        track = directory / match.group(1)
        boxes = _boxes(track.read_bytes())
        moov_end = next(o + n for kind, o, n in boxes if kind == "moov")
        sidx = next((o, o + n - 1) for kind, o, n in boxes if kind == "sidx")
        return (
            f"<BaseURL>{match.group(1)}</BaseURL>\n"
            f'{match.group(2)}<SegmentBase indexRange="{sidx[0]}-{sidx[1]}">'
            f'<Initialization range="0-{moov_end - 1}"/></SegmentBase>'
        )

    on_demand = re.sub(
        r"<BaseURL>([^<]+)</BaseURL>\s*?\n(\s*)<SegmentList.*?</SegmentList>",
        segment_base,
        manifest,
        flags=re.DOTALL,
    )
    on_demand = on_demand.replace("isoff-live:2011", "isoff-on-demand:2011")
    (directory / "ondemand.mpd").write_text(on_demand)


def _write_multi_period_mpd(root: Path) -> None:
    """Two Periods over dash/'s segments, with BaseURLs on the MPD, Period and AdaptationSet."""
    source = (root / "dash" / "manifest.mpd").read_text()
    video = re.search(r'<AdaptationSet id="0".*?</AdaptationSet>', source, re.DOTALL)
    assert video is not None
    adaptation = video.group(0).replace(">", "><BaseURL>./</BaseURL>", 1)
    periods = "".join(
        f'<Period id="p{i}" start="PT{i * SECONDS}S" duration="PT{SECONDS}S">'
        f"<BaseURL>dash/</BaseURL>{adaptation}</Period>"
        for i in range(2)
    )
    (root / "dash-mp" / "manifest.mpd").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011"'
        f' type="static" mediaPresentationDuration="PT{2 * SECONDS}S" minBufferTime="PT2S">\n'
        f"<BaseURL>../</BaseURL>\n{periods}\n</MPD>\n"
    )
