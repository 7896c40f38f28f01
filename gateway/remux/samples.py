"""A segment's samples, sliced out of the source byte ranges it fetched."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable
from itertools import repeat
from operator import add, sub

from gateway.remux.errors import RemuxError
from gateway.remux.movie import Track
from gateway.remux.plan import Segment

Read = Callable[[int, int], bytes]

# Added to every timestamp both muxers write, so TS and fMP4 segments share one timeline:
# MP4 decode times may be negative (B-frame delay, AAC priming), and neither a PES nor a
# tfdt can carry that.
TIMELINE_OFFSET_SECONDS = 10


class SegmentData:
    """One `read` per byte range of the segment; samples are memoryview slices of those."""

    def __init__(self, segment: Segment, read: Read) -> None:
        self._starts: list[int] = []
        self._views: list[memoryview] = []
        for offset, length in segment.ranges:
            data = read(offset, length)
            self._starts.append(offset)
            self._views.append(memoryview(data))

    def samples(self, track: Track, first: int, end: int) -> list[memoryview]:
        """The bytes of samples [first, end) of `track`."""
        if first >= end:
            return []
        offsets = track.offsets[first:end]
        sizes = track.sizes[first:end]
        ends = array("q", map(add, offsets, sizes))
        at = bisect_right(self._starts, min(offsets)) - 1
        if at >= 0:
            start, view = self._starts[at], self._views[at]
            if max(ends) <= start + len(view):
                # The usual case: all of them in one range, sliced without a Python loop.
                starts = map(sub, offsets, repeat(start))
                stops = map(sub, ends, repeat(start))
                return list(map(view.__getitem__, map(slice, starts, stops)))
        return [self._sample(offset, size) for offset, size in zip(offsets, sizes, strict=True)]

    def _sample(self, offset: int, size: int) -> memoryview:
        at = bisect_right(self._starts, offset) - 1
        if at >= 0:
            relative = offset - self._starts[at]
            view = self._views[at]
            if relative + size <= len(view):
                return view[relative : relative + size]
        raise RemuxError("a sample lies outside the bytes read for its segment")
