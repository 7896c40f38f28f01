"""Parsing a moov into sample tables, with ffprobe as the judge, and its cached form."""

from __future__ import annotations

import dataclasses
import zlib
from array import array
from contextlib import suppress
from operator import add

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.remux.blob import dump_movie, load_movie
from gateway.remux.boxes import scan_top_level
from gateway.remux.errors import RemuxError
from gateway.remux.movie import Movie, parse_moov
from gateway.remux.plan import plan_segments
from gateway.remux.tables import sync_samples
from tests.remux.conftest import FPS, ffprobe, load, moov_of

PROBED = [
    "faststart.mp4", "moov_last.mp4", "bframes.mp4", "video_only.mp4", "audio_only.m4a",
    "ac3.mp4", "mp3.mp4", "hevc.mp4", "vp9_opus.mp4",
]  # fmt: skip
# ffprobe's codec_name → the sample entry and the start of the RFC 6381 string
CODECS = {
    "h264": ("avc1", "avc1."), "hevc": ("hvc1", "hvc1."), "vp9": ("vp09", "vp09."),
    "aac": ("mp4a", "mp4a.40.2"), "mp3": ("mp4a", "mp4a.40.34"), "ac3": ("ac-3", "ac-3"),
    "opus": ("Opus", "opus"),
}  # fmt: skip


@pytest.mark.parametrize("name", PROBED)
def test_tracks_agree_with_ffprobe(sources, name):
    path = sources.path(name)
    _, movie = load(path)
    probe = ffprobe(path, "-count_packets", "-show_streams", "-show_format")
    streams = probe["streams"]
    assert [track.kind for track in movie.tracks] == [s["codec_type"] for s in streams]
    assert movie.duration == pytest.approx(float(probe["format"]["duration"]), abs=1 / FPS)
    for track, stream in zip(movie.tracks, streams, strict=True):
        codec, codecs = CODECS[stream["codec_name"]]
        assert track.codec == codec
        assert track.codecs.startswith(codecs)
        assert track.sample_count == int(stream["nb_read_packets"]) == int(stream["nb_frames"])
        assert track.end_seconds() == pytest.approx(float(stream["duration"]), abs=1 / FPS)
        if track.kind == "video":
            assert (track.width, track.height) == (stream["width"], stream["height"])
        else:
            assert track.sample_rate == int(stream["sample_rate"])
            assert track.channels == stream["channels"]


def test_codecs_strings_carry_profile_and_level(sources):
    streams = ffprobe(sources.path("bframes.mp4"), "-show_streams")["streams"]
    _, movie = load(sources.path("bframes.mp4"))
    assert movie.video is not None
    assert movie.video.codecs == f"avc1.6400{streams[0]['level']:02x}"  # High, level 2.1
    assert [track.codecs for track in movie.audio] == ["mp4a.40.2"]
    _, hevc = load(sources.path("hevc.mp4"))
    assert hevc.video is not None
    level = ffprobe(sources.path("hevc.mp4"), "-show_streams")["streams"][0]["level"]
    assert hevc.video.codecs.startswith(f"hvc1.1.6.L{level}.")  # Main, main-compatible


def test_the_edit_list_shift_puts_both_tracks_on_one_timeline(sources):
    """With B-frames the first frame is presented one reorder delay after it is decoded, and
    AAC starts with a priming frame; the edit lists move both so the movie starts at 0."""
    _, movie = load(sources.path("bframes.mp4"))
    video, audio = movie.video, movie.audio[0]
    assert video is not None and video.cts and video.shift > 0
    assert video.dts[0] < 0 and video.dts[0] + video.cts[0] == 0
    assert audio.shift == 1024 and audio.dts[0] == -1024  # one priming frame before 0
    packets = ffprobe(sources.path("bframes.mp4"), "-select_streams", "v", "-show_entries",
                      "packet=pts,dts", "-show_packets")["packets"]  # fmt: skip
    assert [(p["dts"], p["pts"]) for p in packets[:20]] == [
        (video.dts[i], video.dts[i] + video.cts[i]) for i in range(20)
    ]


def test_keyframes_are_the_sync_samples(sources):
    _, movie = load(sources.path("faststart.mp4"))
    assert movie.video is not None
    keys = [i for i, flag in enumerate(movie.video.sync) if flag]
    assert keys == list(range(0, 750, 50))
    assert set(movie.audio[0].sync) == {1}


@pytest.mark.parametrize("name", PROBED)
def test_every_sample_agrees_with_ffprobe(sources, name):
    """Decode and presentation time, file position, size and keyframe flag of each packet:
    chunks of one and of many samples, edit lists, B-frames, variable audio frame sizes."""
    path = sources.path(name)
    _, movie = load(path)
    packets = ffprobe(path, "-show_entries", "packet=stream_index,dts,pts,pos,size,flags",
                      "-show_packets")["packets"]  # fmt: skip
    for index, track in enumerate(movie.tracks):
        presented = map(add, track.dts, track.cts) if track.cts else iter(track.dts)
        columns = (track.dts, presented, track.offsets, track.sizes, track.sync)
        mine = list(zip(*columns, strict=True))
        theirs = [
            (int(p["dts"]), int(p["pts"]), int(p["pos"]), int(p["size"]), int(p["flags"][0] == "K"))
            for p in packets
            if p["stream_index"] == index
        ]
        assert mine == theirs


@pytest.mark.parametrize("name", PROBED)
def test_slices_of_every_column_agree_with_the_whole(sources, name):
    """What a segment asks for (a slice, a few values) is what the whole column holds."""
    _, movie = load(sources.path(name))
    for track in movie.tracks:
        count = track.sample_count
        columns = [track.dts, track.offsets, track.sync] + ([track.cts] if track.cts else [])
        wholes = [list(column) for column in columns]
        cuts = sorted(
            {0, 1, count // 3, count // 2, count - 7, count - 1, count} & set(range(count + 1))
        )
        for first in cuts:
            for end in cuts:
                for column, whole in zip(columns, wholes, strict=True):
                    assert list(column[first:end]) == whole[first:end]
        picked = sorted({0, count - 1, count // 5, count // 2})
        assert [track.dts[i] for i in picked] == [wholes[0][i] for i in picked]
        assert list(track.dts.at_many(picked)) == [wholes[0][i] for i in picked]
        assert list(track.offsets.at_many(picked)) == [wholes[1][i] for i in picked]
        assert list(track.dts.span(count - 1, count + 1)) == [wholes[0][-1], track.dts.end]


def _with_co64(moov: bytes, shift: int) -> bytes:
    """`moov` with every stco rewritten as a co64 whose offsets are `shift` bytes further."""

    def rewrite(data: bytes) -> bytes:
        out = bytearray()
        pos = 0
        while pos + 8 <= len(data):
            size = int.from_bytes(data[pos : pos + 4], "big")
            kind = data[pos + 4 : pos + 8]
            body = data[pos + 8 : pos + size]
            if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
                body = rewrite(body)
            elif kind == b"stco":
                count = int.from_bytes(body[4:8], "big")
                offsets = [
                    int.from_bytes(body[8 + 4 * i : 12 + 4 * i], "big") for i in range(count)
                ]
                body = body[:8] + b"".join((o + shift).to_bytes(8, "big") for o in offsets)
                kind = b"co64"
            out += (8 + len(body)).to_bytes(4, "big") + kind + body
            pos += size
        return bytes(out)

    return rewrite(moov)


@pytest.mark.parametrize("name", ["faststart.mp4", "bframes.mp4", "audio_only.m4a"])
def test_64_bit_chunk_offsets_read_as_the_32_bit_ones(sources, name):
    moov = moov_of(sources.path(name).read_bytes())
    movie = parse_moov(moov)
    assert parse_moov(_with_co64(moov, 0)) == movie
    far = parse_moov(_with_co64(moov, 5 << 32))  # past 4 GiB
    for near_track, far_track in zip(movie.tracks, far.tracks, strict=True):
        assert list(far_track.offsets) == [offset + (5 << 32) for offset in near_track.offsets]
    assert [s.ranges for s in plan_segments(far)] == [
        tuple((offset + (5 << 32), length) for offset, length in s.ranges)
        for s in plan_segments(movie)
    ]


def test_a_fragmented_mp4_is_refused(sources):
    data = sources.path("fragmented.mp4").read_bytes()
    with pytest.raises(RemuxError, match=r"^fragmented MP4 is not supported$"):
        parse_moov(moov_of(data))


@pytest.mark.parametrize("cut", [8, 100, 1000, -1000, -1])
def test_a_truncated_moov_is_a_remux_error(sources, cut):
    moov = moov_of(sources.path("faststart.mp4").read_bytes())
    with pytest.raises(RemuxError) as caught:
        parse_moov(moov[:cut])
    assert str(caught.value) and "\n" not in str(caught.value)


def test_a_moov_without_audio_or_video_is_a_remux_error():
    empty = (8 + 108 + 8).to_bytes(4, "big") + b"moov" + (108).to_bytes(4, "big") + b"mvhd"
    empty += bytes([0, 0, 0, 0]) + bytes(8) + (1000).to_bytes(4, "big") + bytes(88)
    empty += (8).to_bytes(4, "big") + b"udta"
    with pytest.raises(RemuxError, match=r"^no audio or video samples in the file$"):
        parse_moov(empty)


@pytest.mark.parametrize("name", PROBED)
def test_dump_and_load_round_trip(sources, name):
    _, movie = load(sources.path(name))
    blob = dump_movie(movie)
    loaded = load_movie(blob)
    assert loaded == movie
    for mine, theirs in zip(loaded.tracks, movie.tracks, strict=True):
        assert list(mine.offsets) == list(theirs.offsets)
        assert list(mine.dts) == list(theirs.dts) and list(mine.cts) == list(theirs.cts)
        assert list(mine.sync) == list(theirs.sync)
    assert plan_segments(loaded) == plan_segments(movie)
    # Sizes plus the run-length and chunk tables: well under 8 bytes a sample.
    assert len(blob) < 1024 + 8 * sum(track.sample_count for track in movie.tracks)


def test_a_blob_of_another_version_or_corrupt_is_a_remux_error(sources):
    _, movie = load(sources.path("faststart.mp4"))
    blob = dump_movie(movie)
    with pytest.raises(RemuxError, match="another version"):
        load_movie(blob[:4] + b"\x63" + blob[5:])
    with pytest.raises(RemuxError, match=r"^corrupt movie index$"):
        load_movie(blob[:-10])
    truncated = blob[:5] + zlib.compress(zlib.decompress(blob[5:])[:-3])
    with pytest.raises(RemuxError, match=r"^corrupt movie index$"):
        load_movie(truncated)
    with pytest.raises(RemuxError):
        load_movie(b"")


def test_a_movie_with_no_sync_samples_still_round_trips(sources):
    _, movie = load(sources.path("video_only.mp4"))
    assert movie.video is not None
    no_keys = sync_samples(array("q"), 300)
    changed = Movie(movie.duration, [dataclasses.replace(movie.video, sync=no_keys)])
    assert load_movie(dump_movie(changed)) == changed


# -- nothing but RemuxError, whatever the bytes --------------------------------------------


@pytest.fixture(scope="session")
def small_moov(sources) -> bytes:
    return moov_of(sources.path("vp9_opus.mp4").read_bytes())


@pytest.fixture(scope="session")
def small_blob(sources) -> bytes:
    return dump_movie(load(sources.path("vp9_opus.mp4"))[1])


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    changed = bytearray(data)
    for position, value in edits:
        changed[position % len(changed)] = value
    return bytes(changed)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(edits=EDITS, cut=st.integers(8, 1 << 20))
def test_mutated_moovs_only_raise_remux_errors(small_moov, edits, cut):
    try:
        parse_moov(mutate(small_moov, edits)[:cut])
    except RemuxError as exc:
        assert str(exc) and "\n" not in str(exc)


@SETTINGS
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_remux_errors(data):
    for parse in (parse_moov, load_movie):
        with suppress(RemuxError):
            parse(data)
    with suppress(RemuxError):
        scan_top_level(data, 0, len(data))


@SETTINGS
@given(edits=EDITS)
def test_mutated_blobs_only_raise_remux_errors(small_blob, edits):
    raw = zlib.decompress(small_blob[5:])
    for blob in (mutate(small_blob, edits), small_blob[:5] + zlib.compress(mutate(raw, edits))):
        with suppress(RemuxError):
            load_movie(blob)
