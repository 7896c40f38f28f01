"""Parsing a moov into sample tables, with ffprobe as the judge, and its cached form."""

from __future__ import annotations

import dataclasses
import zlib
from contextlib import suppress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.remux.boxes import scan_top_level
from gateway.remux.errors import RemuxError
from gateway.remux.movie import Movie, dump_movie, load_movie, parse_moov
from tests.remux.conftest import FPS, ffprobe, load

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


def moov_of(data: bytes) -> bytes:
    moov = next(box for box in scan_top_level(data, 0, len(data)) if box.type == "moov")
    return data[moov.offset : moov.offset + moov.size]


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


def test_sample_offsets_point_at_the_sample_bytes(sources):
    _, movie = load(sources.path("moov_last.mp4"))
    packets = ffprobe(sources.path("moov_last.mp4"), "-show_entries",
                      "packet=stream_index,pos,size", "-show_packets")["packets"]  # fmt: skip
    for index, track in enumerate(movie.tracks):
        mine = list(zip(track.offsets, track.sizes, strict=True))
        theirs = [(int(p["pos"]), int(p["size"])) for p in packets if p["stream_index"] == index]
        assert mine == theirs


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


@pytest.mark.parametrize("name", ["bframes.mp4", "audio_only.m4a", "vp9_opus.mp4"])
def test_dump_and_load_round_trip(sources, name):
    _, movie = load(sources.path(name))
    blob = dump_movie(movie)
    assert load_movie(blob) == movie
    # The columns take 25 bytes a sample in memory.
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
    changed = Movie(movie.duration, [dataclasses.replace(movie.video, sync=bytes(300))])
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


# -- sample offsets from the chunk tables --------------------------------------------------------


def _stsc(entries: list[tuple[int, int]]) -> bytes:
    """An stsc box body (version, flags, entries) for (first chunk, samples per chunk)."""
    body = bytes(4) + len(entries).to_bytes(4, "big")
    for first, per_chunk in entries:
        body += first.to_bytes(4, "big") + per_chunk.to_bytes(4, "big") + (1).to_bytes(4, "big")
    return body


def _naive_offsets(
    entries: list[tuple[int, int]], chunk_offsets: list[int], sizes: list[int]
) -> tuple[list[int], list[int]]:
    """Sample offsets and stretch starts, one sample at a time."""
    per_chunk = []
    for index, (first, count) in enumerate(entries):
        last = entries[index + 1][0] if index + 1 < len(entries) else len(chunk_offsets) + 1
        per_chunk += [count] * (last - first)
    offsets: list[int] = []
    runs: list[int] = []
    for chunk, count in enumerate(per_chunk):
        position = chunk_offsets[chunk]
        for _ in range(count):
            if len(offsets) == len(sizes):
                return offsets, runs
            if not offsets or offsets[-1] + sizes[len(offsets) - 1] != position:
                runs.append(len(offsets))
            offsets.append(position)
            position += sizes[len(offsets) - 1]
    return offsets, runs


def _run_offsets(
    entries: list[tuple[int, int]], chunk_offsets: list[int], sizes: list[int]
) -> tuple[list[int], list[int]]:
    from array import array

    from gateway.remux.movie import _offsets

    body = _stsc(entries)
    offsets, runs = _offsets(body, 0, len(body), array("q", chunk_offsets), array("I", sizes))
    return list(offsets), list(runs)


@given(
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=40),
    gaps=st.lists(st.integers(0, 3), min_size=40, max_size=40),
    extra_chunks=st.integers(0, 3),
)
def test_one_sample_per_chunk_matches_the_naive_offsets(sizes, gaps, extra_chunks):
    chunk_offsets, position = [], 100
    for size, gap in zip(sizes, gaps, strict=False):
        position += gap
        chunk_offsets.append(position)
        position += size
    chunk_offsets += [position + k for k in range(extra_chunks)]
    entries = [(1, 1)]
    assert _run_offsets(entries, chunk_offsets, sizes) == _naive_offsets(
        entries, chunk_offsets, sizes
    )


@given(
    per_chunk=st.lists(st.integers(0, 4), min_size=1, max_size=12),
    gaps=st.lists(st.integers(0, 2), min_size=12, max_size=12),
    trim=st.integers(0, 3),
)
def test_several_samples_per_chunk_match_the_naive_offsets(per_chunk, gaps, trim):
    total = sum(per_chunk)
    if total - trim <= 0:
        return
    sizes = [(7 * k) % 11 for k in range(total - trim)]
    entries = [(chunk + 1, count) for chunk, count in enumerate(per_chunk)]
    chunk_offsets, position, sample = [], 50, 0
    for count, gap in zip(per_chunk, gaps, strict=False):
        position += gap
        chunk_offsets.append(position)
        for _ in range(count):
            position += sizes[sample] if sample < len(sizes) else 0
            sample += 1
    assert _run_offsets(entries, chunk_offsets, sizes) == _naive_offsets(
        entries, chunk_offsets, sizes
    )


def test_one_sample_per_chunk_and_grouped_chunks_give_the_same_offsets():
    """The same bytes described as one sample per chunk (the fast path) and as chunks of
    three samples (the general path) give identical offsets and stretches."""
    sizes = [5, 9, 2, 7, 7, 1, 4, 8, 3, 6, 2, 5]
    grouped_offsets, position = [], 1000
    single_offsets = []
    for sample, size in enumerate(sizes):
        if sample % 3 == 0:
            position += 17 if sample == 6 else 0  # a gap before the third chunk
            grouped_offsets.append(position)
        single_offsets.append(position)
        position += size
    single = _run_offsets([(1, 1)], single_offsets, sizes)
    grouped = _run_offsets([(1, 3)], grouped_offsets, sizes)
    assert single == grouped == _naive_offsets([(1, 3)], grouped_offsets, sizes)
    assert single[1] == [0, 6]
