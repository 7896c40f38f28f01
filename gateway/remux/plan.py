"""Cutting a movie into HLS segments, and the source byte ranges each segment needs.

Only the samples at segment boundaries are looked at: keyframe times, the first sample of
each track in each segment (found by bisecting the decode-time runs), and the first and
last byte of each track's share of a segment (from the chunk tables), so a plan costs a
few thousand lookups rather than a pass over every sample.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from operator import add

from gateway.remux.errors import RemuxError
from gateway.remux.movie import Movie, Track

# Bytes between two needed stretches that are cheaper to fetch than to skip with another
# request.
MERGE_GAP = 64 * 1024
_EPSILON = 1e-6  # seconds; a keyframe this close before a multiple of the target counts

Extent = tuple[int, int, int]  # first byte, end byte, bytes of samples


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
    try:
        return _plan(movie, target)
    except RemuxError:
        raise
    except (IndexError, ValueError, OverflowError):
        raise RemuxError("corrupt MP4: its sample tables do not hold together") from None


def _plan(movie: Movie, target: float) -> list[Segment]:
    lead = movie.video or movie.tracks[0]
    cuts, cut_times = _cuts(lead, target)
    count = len(cuts)
    # Segment i starts at cut_times[i] (lead track ticks); the first one at 0.
    bounds: list[list[int]] = []  # per track: the first sample of each segment, then the end
    extents: list[list[Extent | None]] = []  # per track: its share of each segment
    for track in movie.tracks:
        firsts = cuts if track is lead else _assign(track, cut_times, lead.timescale)
        firsts = [*firsts, track.sample_count]
        bounds.append(firsts)
        extents.append(_extents(track, firsts))

    timescale = lead.timescale
    starts = [0.0] + [time / timescale for time in cut_times[1:]]
    ends = [*starts[1:], max(movie.duration, starts[-1])]
    segments = []
    for number in range(count):
        samples = tuple((firsts[number], firsts[number + 1]) for firsts in bounds)
        shares = [track_extents[number] for track_extents in extents]
        ranges = _ranges(movie.tracks, samples, shares)
        start = starts[number]
        segments.append(Segment(number, start, ends[number] - start, ranges, samples))
    return segments


def _cuts(lead: Track, target: float) -> tuple[list[int], list[int]]:
    """First sample index and presentation time (ticks) of each segment of the lead track."""
    dts, cts, sync = lead.dts, lead.cts, lead.sync
    step = target * lead.timescale
    slack = _EPSILON * lead.timescale
    cuts, times = [0], [0]
    multiple = 1
    if sync.every and not cts:
        # Every sample may start a segment, and decode times only grow: bisect their runs.
        at = 1
        while True:
            found = max(at, dts.index_at(math.ceil(multiple * step - slack)))
            if found >= len(dts):
                break
            time = dts[found]
            cuts.append(found)
            times.append(time)
            at = found + 1
            multiple = max(multiple + 1, math.floor(time / step + _EPSILON) + 1)
        return cuts, times
    keys = sync.keys()
    if not keys:
        raise RemuxError(f"no {lead.kind} keyframes")
    key_times = dts.at_many(keys)
    if cts:
        key_times = array("q", map(add, key_times, cts.at_many(keys)))
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
    index_at = track.dts.index_at
    for time in cut_times[1:]:
        # ceil(time * scale / lead_timescale), exactly
        at = max(at, index_at(-(-time * scale // lead_timescale)))
        firsts.append(at)
    return firsts


def _extents(track: Track, bounds: list[int]) -> list[Extent | None]:
    """Each segment's share of `track` (None: no samples), from segment boundaries."""
    offsets, sizes = track.offsets, track.sizes
    pairs = list(pairwise(bounds))
    if not offsets.ordered:
        return [offsets.extent(first, end) if first < end else None for first, end in pairs]
    # Samples in file order: a share runs from its first sample's offset to its last's end.
    used = [(first, end) for first, end in pairs if first < end]
    if not used:
        return [None] * len(pairs)
    lows = offsets.at_many([first for first, _ in used])
    lasts = [end - 1 for _, end in used]
    highs = map(add, offsets.at_many(lasts), map(sizes.__getitem__, lasts))
    totals = map(sum, map(sizes.__getitem__, map(slice, *zip(*used, strict=True))))
    shares = iter(zip(lows, highs, totals, strict=True))
    return [next(shares) if first < end else None for first, end in pairs]


def _ranges(
    tracks: Sequence[Track], samples: Sequence[tuple[int, int]], shares: Sequence[Extent | None]
) -> tuple[tuple[int, int], ...]:
    extents = [share for share in shares if share is not None]
    low = min(extent[0] for extent in extents)
    high = max(extent[1] for extent in extents)
    if high - low - sum(extent[2] for extent in extents) <= MERGE_GAP:
        # Interleaved tracks, the usual layout: no gap is larger than all the bytes the
        # samples leave uncovered, so the segment is one span.
        return ((low, high - low),)
    spans: list[tuple[int, int]] = []  # (start, end) file offsets
    for track, (first, end), share in zip(tracks, samples, shares, strict=True):
        if share is None:
            continue
        if track.offsets.ordered and share[1] - share[0] - share[2] <= MERGE_GAP:
            # No gap between its samples is larger than MERGE_GAP, so its stretches merge
            # into one whatever lies between them: that one is the extent.
            spans.append((share[0], share[1]))
        else:
            spans.extend(track.offsets.stretches(first, end))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] <= MERGE_GAP:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple((start, end - start) for start, end in merged)
