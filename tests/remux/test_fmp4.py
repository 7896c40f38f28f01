"""fMP4 segments (init + moof/mdat), judged by ffprobe and ffmpeg, alone and as HLS."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from gateway.remux.fmp4 import fmp4_init, mux_fmp4
from gateway.remux.plan import plan_segments
from tests.remux.conftest import (
    decode_errors,
    ffprobe,
    frame_counts,
    load,
    reader,
    source_frames,
    write_playlist,
)

MUXED = ["faststart.mp4", "bframes.mp4", "audio_only.m4a", "hevc.mp4", "vp9_opus.mp4", "ac3.mp4"]


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[str, bytes]]:
    """(type, body) of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    found = []
    while start < end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        found.append((kind.decode("latin-1"), data[start + 8 : start + size]))
        start += size
    assert start == end
    return found


def child(body: bytes, kind: str, skip: int = 0) -> bytes:
    return next(b for k, b in boxes(body, skip) if k == kind)


@pytest.fixture(scope="module")
def written(sources, tmp_path_factory):
    made: dict[str, tuple[Path, list[Path], Path]] = {}

    def make(name: str):
        if name not in made:
            data, movie = load(sources.path(name))
            plan = plan_segments(movie, 4.0)
            directory = tmp_path_factory.mktemp("fmp4-" + name.replace(".", "-"))
            init = directory / "init.mp4"
            init.write_bytes(fmp4_init(movie))
            files = []
            for segment in plan:
                path = directory / f"seg-{segment.number}.m4s"
                path.write_bytes(mux_fmp4(movie, segment, reader(data, segment)))
                files.append(path)
            playlist = write_playlist(directory, plan, [p.name for p in files], map_uri="init.mp4")
            made[name] = (init, files, playlist)
        return made[name]

    return make


@pytest.mark.parametrize("name", MUXED)
def test_init_and_segments_joined_decode_cleanly_to_every_frame(sources, written, name, tmp_path):
    init, files, _ = written(name)
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(init.read_bytes() + b"".join(path.read_bytes() for path in files))
    assert decode_errors(joined) == ""
    assert frame_counts(joined) == source_frames(sources.path(name))


@pytest.mark.parametrize("name", ["bframes.mp4", "vp9_opus.mp4", "hevc.mp4"])
def test_the_segments_play_as_an_hls_playlist_with_a_map(sources, written, name):
    _, _, playlist = written(name)
    assert decode_errors(playlist) == ""
    assert frame_counts(playlist) == source_frames(sources.path(name))


def test_each_segment_starts_where_the_plan_says(sources, written, tmp_path):
    """The same timeline as the MPEG-TS segments: the source's, 10 s in."""
    init, files, _ = written("bframes.mp4")
    _, movie = load(sources.path("bframes.mp4"))
    for path, segment in zip(files, plan_segments(movie), strict=True):
        alone = tmp_path / "alone.mp4"
        alone.write_bytes(init.read_bytes() + path.read_bytes())
        probe = ffprobe(alone, "-show_streams")
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        assert float(video["start_time"]) == pytest.approx(10 + segment.start, abs=1e-3)


def test_the_init_segment_keeps_the_sample_entries_and_declares_fragments(sources):
    _, movie = load(sources.path("bframes.mp4"))
    top = boxes(fmp4_init(movie))
    assert [kind for kind, _ in top] == ["ftyp", "moov"]
    moov = top[1][1]
    kinds = [kind for kind, _ in boxes(moov)]
    assert kinds == ["mvhd", "trak", "trak", "mvex"]
    trex = [struct.unpack(">I", body[4:8])[0] for _, body in boxes(child(moov, "mvex"))]
    assert trex == [track.track_id for track in movie.tracks]
    for (_, trak), track in zip(
        [b for b in boxes(moov) if b[0] == "trak"], movie.tracks, strict=True
    ):
        stbl = child(child(child(trak, "mdia"), "minf"), "stbl")
        stsd = child(stbl, "stsd")
        assert stsd[8:] == track.sample_entry
        assert child(stbl, "stsz") == bytes(12)  # no samples in the init segment


def test_a_segment_is_styp_moof_mdat_with_a_sequence_number_and_decode_times(sources, written):
    data, movie = load(sources.path("bframes.mp4"))
    plan = plan_segments(movie)
    segment = plan[2]
    out = mux_fmp4(movie, segment, reader(data, segment))
    top = boxes(out)
    assert [kind for kind, _ in top] == ["styp", "moof", "mdat"]
    moof = top[1][1]
    assert struct.unpack(">I", child(moof, "mfhd")[4:8])[0] == segment.number + 1
    trafs = [body for kind, body in boxes(moof) if kind == "traf"]
    assert len(trafs) == len(movie.tracks)
    mdat_start = 8 + len(top[0][1]) + 8 + len(moof) + 8
    for traf, track, (first, end) in zip(trafs, movie.tracks, segment.samples, strict=True):
        tfhd = child(traf, "tfhd")
        assert struct.unpack(">I", tfhd[:4])[0] & 0x020000  # default-base-is-moof
        tfdt = child(traf, "tfdt")
        assert tfdt[0] == 1
        assert struct.unpack(">Q", tfdt[4:12])[0] == track.dts[first] + 10 * track.timescale
        trun = child(traf, "trun")
        count, offset = struct.unpack(">Ii", trun[4:12])
        assert count == end - first
        # data_offset counts from the moof: it lands on the track's first sample in mdat.
        moof_start = 8 + len(top[0][1])
        assert (
            out[moof_start + offset : moof_start + offset + 16]
            == data[track.offsets[first] : track.offsets[first] + 16]
        )
        assert moof_start + offset >= mdat_start
