"""Real MP4 files made once per session with ffmpeg, and the judges: ffprobe and ffmpeg."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.remux.boxes import scan_top_level
from gateway.remux.movie import Movie, parse_moov
from gateway.remux.plan import Segment

FPS = 25
SINE = "sine=frequency=440:sample_rate=48000"


def _sources(seconds: float) -> list[str]:
    return [
        "-f", "lavfi", "-i", f"testsrc2=size=426x240:rate={FPS}:duration={seconds}",
        "-f", "lavfi", "-i", f"{SINE}:duration={seconds}",
    ]  # fmt: skip


# Keyframes every 2 s, so 4 s segments cut on exact multiples.
_X264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "50", "-keyint_min", "50",
         "-sc_threshold", "0", "-b:v", "250k"]  # fmt: skip
_AAC = ["-c:a", "aac", "-ac", "2", "-b:a", "64k"]
_AV = ["-map", "0:v", "-map", "1:a"]


def _has_encoder(name: str) -> bool:
    listing = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=False
    ).stdout
    return any(line.split()[1:2] == [name] for line in listing.splitlines() if line.strip())


# name: (seconds, output options); every file has 426x240 25 fps video and/or 48 kHz audio.
_FILES: dict[str, tuple[float, list[str]]] = {
    # ultrafast: no B-frames, so no composition offsets
    "faststart.mp4": (30, [*_AV, *_X264, "-preset", "ultrafast", *_AAC, "-movflags", "+faststart"]),
    "moov_last.mp4": (12, [*_AV, *_X264, "-preset", "ultrafast", *_AAC]),
    # veryfast has B-frames: composition offsets, and an edit list on both tracks
    "bframes.mp4": (30, [*_AV, *_X264, "-preset", "veryfast", *_AAC, "-movflags", "+faststart"]),
    "video_only.mp4": (12, ["-map", "0:v", *_X264, "-preset", "veryfast"]),
    "audio_only.m4a": (12, ["-map", "1:a", *_AAC]),
    "ac3.mp4": (8, [*_AV, *_X264, "-preset", "ultrafast", "-c:a", "ac3", "-b:a", "128k"]),
    "mp3.mp4": (8, [*_AV, *_X264, "-preset", "ultrafast", "-c:a", "libmp3lame", "-ac", "2", "-b:a", "96k"]),
    "hevc.mp4": (8, [*_AV, "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                     "-x265-params", "keyint=50:min-keyint=50:scenecut=0:log-level=error",
                     "-tag:v", "hvc1", *_AAC]),
    "vp9_opus.mp4": (3, [*_AV, "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                         "-g", "50", "-b:v", "200k", "-c:a", "libopus", "-b:a", "64k"]),
    "fragmented.mp4": (3, [*_AV, *_X264, "-preset", "ultrafast", *_AAC,
                           "-movflags", "frag_keyframe+empty_moov"]),
    "stream.ts": (3, [*_AV, *_X264, "-preset", "ultrafast", *_AAC, "-f", "mpegts"]),
}  # fmt: skip
_ENCODERS = {"hevc.mp4": "libx265", "vp9_opus.mp4": "libvpx-vp9", "mp3.mp4": "libmp3lame"}


@dataclass(frozen=True)
class Sources:
    root: Path

    def path(self, name: str) -> Path:
        path = self.root / name
        if not path.exists():
            pytest.skip(f"ffmpeg here cannot make {name}")
        return path


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("needs ffmpeg and ffprobe")
    root = tmp_path_factory.mktemp("remux-sources")

    def make(name: str) -> None:
        seconds, options = _FILES[name]
        encoder = _ENCODERS.get(name)
        if encoder is not None and not _has_encoder(encoder):
            return
        command = ["ffmpeg", "-nostdin", "-v", "error", "-y", *_sources(seconds), *options,
                   str(root / name)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed making {name}: {result.stderr.strip()[-400:]}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(make, name) for name in _FILES]:
            future.result()
    return Sources(root)


# -- helpers the tests share ------------------------------------------------------------------


def moov_of(data: bytes) -> bytes:
    """The moov box of a whole file."""
    moov = next(box for box in scan_top_level(data, 0, len(data)) if box.type == "moov")
    return data[moov.offset : moov.offset + moov.size]


def load(path: Path) -> tuple[bytes, Movie]:
    """A file's bytes and its parsed moov."""
    data = path.read_bytes()
    return data, parse_moov(moov_of(data))


def reader(data: bytes, segment: Segment) -> Callable[[int, int], bytes]:
    """`read` as the gateway gives it: bytes from inside the segment's ranges, nothing else."""

    def read(offset: int, length: int) -> bytes:
        inside = any(
            start <= offset and offset + length <= start + size for start, size in segment.ranges
        )
        assert inside, f"read({offset}, {length}) outside {segment.ranges}"
        return data[offset : offset + length]

    return read


def ffprobe(path: Path, *args: str) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def decode_errors(path: Path, *input_options: str) -> str:
    """What `ffmpeg -v error -i path -f null -` complains about (empty: nothing)."""
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *input_options, "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stderr.strip() or ("" if result.returncode == 0 else "ffmpeg failed")


def source_frames(path: Path) -> dict[str, int]:
    streams = ffprobe(path, "-count_packets", "-show_entries", "stream=codec_type,nb_read_packets")
    return {s["codec_type"]: int(s["nb_read_packets"]) for s in streams["streams"]}


def frame_counts(path: Path) -> dict[str, int]:
    """Decoded frames per stream type (the first stream of each)."""
    streams = ffprobe(path, "-count_frames", "-show_entries", "stream=codec_type,nb_read_frames")
    counts: dict[str, int] = {}
    for stream in streams["streams"]:
        counts.setdefault(stream["codec_type"], int(stream["nb_read_frames"]))
    return counts


def write_playlist(
    directory: Path, segments: Sequence[Segment], names: Sequence[str], map_uri: str | None = None
) -> Path:
    """A VOD media playlist listing already written segment files."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{7 if map_uri else 3}", "#EXT-X-TARGETDURATION:5",
             "#EXT-X-PLAYLIST-TYPE:VOD"]  # fmt: skip
    if map_uri:
        lines.append(f'#EXT-X-MAP:URI="{map_uri}"')
    for segment, name in zip(segments, names, strict=True):
        lines += [f"#EXTINF:{segment.duration:.6f},", name]
    lines.append("#EXT-X-ENDLIST")
    path = directory / "list.m3u8"
    path.write_text("\n".join(lines) + "\n")
    return path
