"""Cutting a movie into HLS segments, and the source byte ranges each segment needs."""

from __future__ import annotations

import math
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from operator import add

from gateway.remux.errors import RemuxError
from gateway.remux.movie import Movie, Track

# Bytes between two needed stretches that are cheaper to fetch than to skip with another
# request.
MERGE_GAP = 64 * 1024
_EPSILON = 1e-6  # seconds; a keyframe this close before a multiple of the target counts


@dataclass(frozen=True, slots=True)
class Segment:
    number: int  # 0-based
    start: float  # seconds
    duration: float  # seconds, from sample times (EXTINF)
    ranges: tuple[tuple[int, int], ...]  # (offset, length) of the source bytes it needs, sorted
    # [first, end) sample indices per track, in `Movie.tracks` order.
    samples: tuple[tuple[int, int], ...] = ()


def plan_segments(movie: Movie, target: float = 4.0) -> list[Segment]:
    """Segments cut at the first keyframe at or after each multiple of `target` seconds (at
    sample boundaries for audio-only files); every other track's samples go to the segment
    whose time span contains their start."""
    if not target > 0:
        raise RemuxError("the segment duration must be positive")
    lead = movie.video or movie.tracks[0]
    cuts, cut_times = _cuts(lead, target)
    # Segment i starts at cut_times[i] (lead track ticks); the first one at 0.
    per_track: list[list[int]] = []
    for track in movie.tracks:
        if track is lead:
            per_track.append(cuts)
        else:
            per_track.append(_assign(track, cut_times, lead.timescale))

    count = len(cuts)
    timescale = lead.timescale
    starts = [0.0] + [time / timescale for time in cut_times[1:]]
    ends = [*starts[1:], max(movie.duration, starts[-1])]
    segments = []
    for number in range(count):
        samples = tuple(
            (firsts[number], firsts[number + 1] if number + 1 < count else track.sample_count)
            for track, firsts in zip(movie.tracks, per_track, strict=True)
        )
        ranges = _ranges(movie.tracks, samples)
        start = starts[number]
        segments.append(Segment(number, start, ends[number] - start, ranges, samples))
    return segments


def _cuts(lead: Track, target: float) -> tuple[list[int], list[int]]:
    """First sample index and presentation time (ticks) of each segment of the lead track."""
    dts, cts, sync = lead.dts, lead.cts, lead.sync
    if sync.count(0) == 0 and not cts:
        keys: Sequence[int] = range(len(dts))
        key_times: Sequence[int] = dts
    else:
        keys = array("q", (match.start() for match in re.finditer(b"\x01", sync)))
        if not keys:
            raise RemuxError(f"no {lead.kind} keyframes")
        key_times = array("q", map(dts.__getitem__, keys))
        if cts:
            key_times = array("q", map(add, key_times, map(cts.__getitem__, keys)))
    step = target * lead.timescale
    slack = _EPSILON * lead.timescale
    cuts, times = [0], [0]
    multiple = 1
    at = 1 if keys[0] == 0 else 0  # sample 0 starts segment 0 whatever it is
    while True:
        found = bisect_left(key_times, multiple * step - slack, at)
        if found >= len(keys):
            break
        time = key_times[found]
        cuts.append(keys[found])
        times.append(time)
        at = found + 1
        multiple = max(multiple + 1, math.floor(time / step + _EPSILON) + 1)
    return cuts, times


def _assign(track: Track, cut_times: Sequence[int], lead_timescale: int) -> list[int]:
    """First sample of `track` in each segment: the first that starts at or after its cut."""
    firsts = [0]
    at = 0
    scale = track.timescale
    for time in cut_times[1:]:
        # ceil(time * scale / lead_timescale), exactly
        threshold = -(-time * scale // lead_timescale)
        at = bisect_left(track.dts, threshold, at)
        firsts.append(at)
    return firsts


def _ranges(
    tracks: Sequence[Track], samples: Sequence[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    extents = [
        _extent(track, first, end)
        for track, (first, end) in zip(tracks, samples, strict=True)
        if first < end
    ]
    low = min(extent[0] for extent in extents)
    high = max(extent[1] for extent in extents)
    if high - low - sum(extent[2] for extent in extents) <= MERGE_GAP:
        # Interleaved tracks, the usual layout: no gap is larger than all the bytes the
        # samples leave uncovered, so the segment is one span.
        return ((low, high - low),)
    spans: list[tuple[int, int]] = []  # (start, end) file offsets
    for track, (first, end) in zip(tracks, samples, strict=True):
        if first < end:
            spans.extend(_track_spans(track, first, end))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] <= MERGE_GAP:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple((start, end - start) for start, end in merged)


def _extent(track: Track, first: int, end: int) -> tuple[int, int, int]:
    """First byte, end byte and total size of samples [first, end)."""
    offsets = track.offsets[first:end]
    sizes = track.sizes[first:end]
    last = max(offsets)
    # Samples do not overlap, so the one that starts last ends last; it is usually the last.
    at = len(offsets) - 1 if offsets[-1] == last else offsets.index(last)
    return min(offsets), last + sizes[at], sum(sizes)


def _track_spans(track: Track, first: int, end: int) -> list[tuple[int, int]]:
    """File spans covering samples [first, end) of `track`: one per back-to-back stretch."""
    runs = track.runs
    spans = []
    at = bisect_right(runs, first) - 1
    lo = first
    while lo < end:
        at += 1
        hi = min(runs[at], end) if at < len(runs) else end
        spans.append((track.offsets[lo], track.offsets[hi - 1] + track.sizes[hi - 1]))
        lo = hi
    return spans
