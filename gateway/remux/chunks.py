"""Sample file offsets from the chunk tables (stsc, stco / co64) and the sample sizes.

A sample's offset is its chunk's offset plus the sizes of the samples before it in that
chunk. Only the stsc entries are indexed (by their first sample), so finding one sample is
a bisection, and a slice expands just the chunks it touches.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate, chain, compress, islice, repeat
from operator import add, floordiv, mul, ne, sub

from gateway.remux.errors import RemuxError
from gateway.remux.tables import Column, increasing


class SampleOffsets(Column):
    """The file offset of each sample."""

    __slots__ = ("_direct", "_first", "_per", "_sample", "_sizes", "chunks", "ordered", "stsc")

    def __init__(self, stsc: array[int], chunks: array[int], sizes: array[int]) -> None:
        """`stsc`: the box's entries (first chunk, samples per chunk, description index),
        chunks counted from 1."""
        self.stsc = stsc
        self.chunks = chunks
        self._sizes = sizes
        self._count = total = len(sizes)
        firsts, per_chunk = stsc[0::3], stsc[1::3]
        # Entry k covers chunks [firsts[k], firsts[k + 1]), the last one up to the last chunk.
        spans = array("q", map(sub, chain(islice(firsts, 1, None), (len(chunks) + 1,)), firsts))
        if not firsts or firsts[0] != 1 or min(spans[:-1], default=1) < 1:
            raise RemuxError("corrupt MP4: the sample-to-chunk table is out of order")
        if spans[-1] < 0:
            raise RemuxError("corrupt MP4: the sample-to-chunk table names missing chunks")
        first_sample = array("q", accumulate(map(mul, spans, per_chunk), initial=0))
        if 0 in per_chunk or not spans[-1]:  # entries that hold no sample are never found
            keep = array("b", map(bool, map(mul, spans, per_chunk)))
            firsts = array("I", compress(firsts, keep))
            per_chunk = array("I", compress(per_chunk, keep))
            first_sample = array("q", compress(first_sample, chain(keep, (True,))))
        if first_sample[-1] < total:
            raise RemuxError("corrupt MP4: the chunks hold fewer samples than the track has")
        # Entries past the last sample are never looked at.
        used = bisect_right(first_sample, total - 1) if total else 0
        del firsts[used:], per_chunk[used:], first_sample[used + 1 :]
        self._first, self._per, self._sample = firsts, per_chunk, first_sample
        # One sample per chunk, chunk i holding sample i: the offsets are the chunk offsets.
        self._direct = used == 1 and per_chunk[0] == 1 and firsts[0] == 1
        last_chunk = self._chunk_of(total - 1)[0] if total else -1
        # Chunks in file order (each at a higher offset than the one before): every sample
        # starts where or after the one before it ends, so the bytes of samples [a, b) run
        # from a's offset to b - 1's end. (A sample that overlaps the next chunk is not
        # looked for: that file is corrupt, and fails when a segment's bytes are sliced.)
        in_file = chunks[: last_chunk + 1]
        self.ordered = increasing(in_file)
        if chunks.typecode == "q" and in_file and min(in_file[:1] if self.ordered else in_file) < 0:
            raise RemuxError("corrupt MP4: a sample lies before the start of the file")

    def _state(self) -> tuple[object, ...]:
        return self.stsc, self.chunks, self._sizes

    def _chunk_of(self, index: int) -> tuple[int, int]:
        """(chunk, samples before `index` in it)."""
        if self._direct:
            return index, 0
        entry = bisect_right(self._sample, index) - 1
        step, within = divmod(index - self._sample[entry], self._per[entry])
        return self._first[entry] - 1 + step, within

    def _at(self, index: int) -> int:
        chunk, within = self._chunk_of(index)
        offset = self.chunks[chunk]
        return offset + sum(self._sizes[index - within : index]) if within else offset

    def at_many(self, indices: Sequence[int]) -> list[int]:
        if self._direct:
            return list(map(self.chunks.__getitem__, indices))
        return list(map(self._at, indices))

    def span(self, first: int, end: int) -> array[int]:
        if first >= end:
            return array("q")
        if self._direct:
            return self.chunks[first:end]
        sample, per, starts = self._sample, self._per, self._first
        low = bisect_right(sample, first) - 1
        high = bisect_right(sample, end - 1) - 1
        step, within = divmod(first - sample[low], per[low])
        start = first - within  # the first sample of the chunk holding `first`
        # Chunks [lo, hi) of each entry that the slice touches, and their sample counts.
        lo = array("q", map(sub, starts[low : high + 1], repeat(1)))
        entry_samples = map(sub, sample[low + 1 : high + 2], sample[low : high + 1])
        held = map(floordiv, entry_samples, per[low : high + 1])
        hi = array("q", map(add, lo, held))
        lo[0] += step
        hi[-1] = starts[high] + (end - 1 - sample[high]) // per[high]
        chunk_ids = chain.from_iterable(map(range, lo, hi))
        counts = array("q", chain.from_iterable(map(repeat, per[low : high + 1], map(sub, hi, lo))))
        counts[-1] -= sum(counts) - (end - start)  # the last chunk is cut at `end`
        # offset = chunk offset - bytes before the chunk's first sample + bytes before it.
        before = array("q", accumulate(self._sizes[start:end], initial=0))
        chunk_starts = accumulate(counts, initial=0)
        bases = map(
            sub, map(self.chunks.__getitem__, chunk_ids), map(before.__getitem__, chunk_starts)
        )
        offsets = array("q", map(add, chain.from_iterable(map(repeat, bases, counts)), before))
        return offsets[within:]

    def extent(self, first: int, end: int) -> tuple[int, int, int]:
        """First byte, end byte and total size of samples [first, end), first < end."""
        sizes = self._sizes
        if self.ordered:
            last = end - 1
            return self._at(first), self._at(last) + sizes[last], sum(sizes[first:end])
        offsets = self.span(first, end)
        highest = max(offsets)
        at = len(offsets) - 1 if offsets[-1] == highest else offsets.index(highest)
        return min(offsets), highest + sizes[first + at], sum(sizes[first:end])

    def stretches(self, first: int, end: int) -> list[tuple[int, int]]:
        """(start, end) file offsets of each stretch of samples [first, end) stored back to
        back."""
        offsets = self.span(first, end)
        ends = array("q", map(add, offsets, self._sizes[first:end]))
        count = len(offsets)
        breaks = list(compress(range(1, count), map(ne, islice(offsets, 1, None), ends)))
        heads = map(offsets.__getitem__, chain((0,), breaks))
        tails = map(ends.__getitem__, map(sub, chain(breaks, (count,)), repeat(1)))
        return list(zip(heads, tails, strict=True))
