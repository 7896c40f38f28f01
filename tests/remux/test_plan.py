"""Cutting a movie into segments: where the cuts fall, what each segment holds, what it reads."""

from __future__ import annotations

import dataclasses
import math
from array import array
from itertools import pairwise

import pytest

from gateway.remux.chunks import SampleOffsets
from gateway.remux.errors import RemuxError
from gateway.remux.movie import Movie, Track
from gateway.remux.plan import MERGE_GAP, Segment, plan_segments
from gateway.remux.tables import sync_samples
from tests.remux.conftest import FPS, ffprobe, load

PLANNED = ["faststart.mp4", "bframes.mp4", "video_only.mp4", "audio_only.m4a", "hevc.mp4",
           "ac3.mp4", "vp9_opus.mp4"]  # fmt: skip


def start_of(track: Track, index: int) -> float:
    """Presentation time of a sample, in seconds."""
    cts = track.cts[index] if track.cts else 0
    return (track.dts[index] + cts) / track.timescale


def check_plan(movie: Movie, plan: list[Segment], target: float) -> None:
    """What every plan promises."""
    assert [segment.number for segment in plan] == list(range(len(plan)))
    assert plan[0].start == 0
    for before, after in pairwise(plan):
        assert after.start == pytest.approx(before.start + before.duration, abs=1e-9)
    assert sum(segment.duration for segment in plan) == pytest.approx(movie.duration, abs=1e-6)
    lead = movie.video or movie.tracks[0]
    lead_at = movie.tracks.index(lead)
    for index, track in enumerate(movie.tracks):
        spans = [segment.samples[index] for segment in plan]
        # Each sample in exactly one segment, in order.
        assert spans[0][0] == 0 and spans[-1][1] == track.sample_count
        assert all(a[1] == b[0] for a, b in pairwise(spans))
    for segment in plan[1:]:
        first = segment.samples[lead_at][0]
        assert lead.sync[first] == 1, "a segment must start on a keyframe"
        assert start_of(lead, first) == pytest.approx(segment.start)
        # The first keyframe at or after a multiple of the target.
        multiple = math.ceil(segment.start / target - 1e-6) * target
        earlier = [i for i in range(segment.samples[lead_at][0]) if lead.sync[i]]
        assert start_of(lead, earlier[-1]) < multiple - 1e-6 or earlier[-1] == 0
        for index, track in enumerate(movie.tracks):
            if track is lead:
                continue
            first, _ = segment.samples[index]
            # Other tracks: by the start of each sample.
            if first < track.sample_count:
                assert start_of(track, first) >= segment.start - 1e-9
            if first > 0:
                assert start_of(track, first - 1) < segment.start
    for segment in plan:
        check_ranges(movie, segment)


def check_ranges(movie: Movie, segment: Segment) -> None:
    ranges = segment.ranges
    assert ranges and all(length > 0 for _, length in ranges)
    assert all(a[0] + a[1] + MERGE_GAP < b[0] for a, b in pairwise(ranges)), (
        "sorted, and anything closer than MERGE_GAP merged"
    )
    samples = sorted(
        (track.offsets[i], track.offsets[i] + track.sizes[i])
        for track, (first, end) in zip(movie.tracks, segment.samples, strict=True)
        for i in range(first, end)
    )
    for start, stop in samples:
        assert any(s <= start and stop <= s + n for s, n in ranges), "a sample is not covered"
    # Every range starts and ends with a sample, and skips no more than MERGE_GAP in between.
    for s, n in ranges:
        inside = [(a, b) for a, b in samples if s <= a and b <= s + n]
        assert inside[0][0] == s and max(b for _, b in inside) == s + n
        reached = s
        for a, b in inside:
            assert a - reached <= MERGE_GAP
            reached = max(reached, b)


@pytest.mark.parametrize("name", PLANNED)
def test_plans_of_real_files_keep_every_promise(sources, name):
    _, movie = load(sources.path(name))
    plan = plan_segments(movie, 4.0)
    check_plan(movie, plan, 4.0)
    duration = float(ffprobe(sources.path(name), "-show_format")["format"]["duration"])
    assert sum(segment.duration for segment in plan) == pytest.approx(duration, abs=1 / FPS)


def test_keyframes_every_two_seconds_make_four_second_segments(sources):
    _, movie = load(sources.path("bframes.mp4"))
    plan = plan_segments(movie, 4.0)
    assert [segment.duration for segment in plan] == [4.0] * 7 + [2.0]
    assert [segment.samples[0] for segment in plan][:2] == [(0, 100), (100, 200)]


def test_a_target_between_keyframes_cuts_at_the_next_keyframe(sources):
    _, movie = load(sources.path("faststart.mp4"))
    plan = plan_segments(movie, 5.0)
    check_plan(movie, plan, 5.0)
    # Keyframes at 0, 2, 4, ...: the first at or after 5 is 6, after 10 is 10, after 15 is 16.
    assert [segment.start for segment in plan] == [0, 6, 10, 16, 20, 26]


def test_audio_only_files_cut_at_sample_boundaries(sources):
    _, movie = load(sources.path("audio_only.m4a"))
    plan = plan_segments(movie, 4.0)
    check_plan(movie, plan, 4.0)
    frame = 1024 / 48000
    assert len(plan) == 3
    for segment in plan[:-1]:
        assert 4.0 - frame < segment.duration < 4.0 + frame


def test_the_byte_ranges_of_an_interleaved_file_are_one_per_segment(sources):
    _, movie = load(sources.path("faststart.mp4"))
    assert all(len(segment.ranges) == 1 for segment in plan_segments(movie))


def test_tracks_stored_far_apart_get_ranges_of_their_own(sources):
    """As if the audio were stored after all the video (a non-interleaved file)."""
    _, movie = load(sources.path("faststart.mp4"))
    audio = movie.audio[0]
    far = 1 << 30
    chunks = array("q", (offset + far for offset in audio.offsets.chunks))
    moved = dataclasses.replace(
        audio, offsets=SampleOffsets(audio.offsets.stsc, chunks, audio.sizes)
    )
    movie = Movie(movie.duration, [movie.tracks[0], moved])
    plan = plan_segments(movie)
    check_plan(movie, plan, 4.0)
    assert all(len(segment.ranges) == 2 for segment in plan)


def test_a_video_track_without_keyframes_cannot_be_cut(sources):
    _, movie = load(sources.path("video_only.mp4"))
    assert movie.video is not None
    blind = Movie(
        movie.duration, [dataclasses.replace(movie.video, sync=sync_samples(array("q"), 300))]
    )
    with pytest.raises(RemuxError, match=r"^no video keyframes$"):
        plan_segments(blind)


def test_one_segment_when_the_target_is_longer_than_the_movie(sources):
    _, movie = load(sources.path("vp9_opus.mp4"))
    plan = plan_segments(movie, 10.0)
    assert len(plan) == 1 and plan[0].duration == pytest.approx(movie.duration)
    check_plan(movie, plan, 10.0)


def _unordered(track: Track) -> Track:
    """`track` with its offsets read the slow way, as for chunks stored out of file order."""
    offsets = SampleOffsets(track.offsets.stsc, track.offsets.chunks, track.sizes)
    offsets.ordered = False
    return dataclasses.replace(track, offsets=offsets)


@pytest.mark.parametrize("name", PLANNED)
@pytest.mark.parametrize("target", [2.0, 4.0, 5.0])
def test_boundary_lookups_plan_as_the_sample_by_sample_path(sources, name, target):
    """The plan from first and last bytes at segment boundaries equals the one from every
    sample's offset (the path for chunks out of file order)."""
    _, movie = load(sources.path(name))
    slow = Movie(movie.duration, [_unordered(track) for track in movie.tracks])
    assert plan_segments(movie, target) == plan_segments(slow, target)


def test_chunks_out_of_file_order_still_plan_every_promise(sources):
    """The audio chunks of a file stored in reverse order: no longer one stretch per segment,
    and every range still covers its samples."""
    _, movie = load(sources.path("faststart.mp4"))
    audio = movie.audio[0]
    chunks = audio.offsets.chunks
    far = 1 << 30
    # Chunk i moves to the mirror place of a region past the end of the file.
    flipped = array("q", (far + (chunks[-1] - offset) * 2 for offset in chunks))
    moved = dataclasses.replace(
        audio, offsets=SampleOffsets(audio.offsets.stsc, flipped, audio.sizes)
    )
    assert not moved.offsets.ordered
    movie = Movie(movie.duration, [movie.tracks[0], moved])
    check_plan(movie, plan_segments(movie), 4.0)
