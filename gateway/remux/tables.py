"""A track's per-sample columns, kept as the MP4's own run-length and chunk tables.

An hour of video and audio is a quarter of a million samples, and any Python pass over all
of them costs tens of milliseconds. A playlist needs only a few thousand values (keyframes,
segment boundaries), and a segment a few hundred samples; so the tables stay compact (runs
of stts / ctts, stss, stsc with the chunk offsets) and each column computes single values
by bisecting its runs, and a slice by expanding only the runs that slice touches.

Every column is an int `Sequence`: `col[i]`, `col[a:b]` (an `array`; `bytes` for the sync
flags), `len`, iteration, and `==`. Building one validates it, so that no lookup of a
sample below `len` can fail later.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate, chain, compress, islice, repeat
from operator import add, ge, mul, sub
from typing import overload

from gateway.remux.errors import RemuxError


class Column(Sequence[int]):
    """Read-only ints through `span` (a slice) and `_at` (one value)."""

    __slots__ = ("_count",)
    _count: int

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, key: int) -> int: ...

    @overload
    def __getitem__(self, key: slice) -> Sequence[int]: ...

    def __getitem__(self, key: int | slice) -> int | Sequence[int]:
        count = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(count)
            if step == 1:
                return self.span(start, max(start, stop))
            return self.span(0, count)[key]
        index = key + count if key < 0 else key
        if not 0 <= index < count:
            raise IndexError("sample index out of range")
        return self._at(index)

    def __iter__(self) -> Iterator[int]:
        return iter(self.span(0, len(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Column) or type(other) is not type(self):
            return NotImplemented
        return self._state() == other._state()

    __hash__ = None  # type: ignore[assignment]

    def _state(self) -> tuple[object, ...]:
        """What equality compares: the tables the column is built from."""
        raise NotImplementedError

    def span(self, first: int, end: int) -> Sequence[int]:
        """The values of samples [first, end), 0 <= first <= end <= len."""
        raise NotImplementedError

    def _at(self, index: int) -> int:
        raise NotImplementedError


def _normalised_runs(
    counts: array[int], values: array[int], total: int, what: str
) -> tuple[array[int], array[int]]:
    """Run lengths and values covering exactly `total` samples, without empty runs.

    Some muxers list one sample fewer: the last entry's value covers the rest; entries past
    `total` are cut off."""
    if not values or len(counts) != len(values):
        raise RemuxError(f"corrupt MP4: {what} is empty")
    counts = array("q", counts)
    values = array("q", values)
    if min(counts) < 0:
        raise RemuxError(f"corrupt MP4: negative counts in {what}")
    ends = array("q", accumulate(counts))
    cut = bisect_left(ends, total)
    if cut < len(ends):
        counts, values = counts[: cut + 1], values[: cut + 1]
        counts[-1] -= ends[cut] - total
    elif ends[-1] < total:
        counts.append(total - ends[-1])
        values.append(values[-1])
    if 0 in counts:
        keep = array("b", map(bool, counts))
        counts = array("q", compress(counts, keep))
        values = array("q", compress(values, keep))
    return counts, values


# -- decode times ----------------------------------------------------------------------------


class DecodeTimes(Column):
    """Each sample's decode time from the stts runs, the edit-list shift already subtracted.

    Index `len` is valid in `span` and `at_many`: the end of the last sample."""

    __slots__ = ("_deltas", "_starts", "_times")

    def __init__(self, counts: array[int], deltas: array[int], shift: int) -> None:
        # Run k covers samples [starts[k], starts[k+1]) from times[k] in steps of deltas[k];
        # a last, empty run of delta 0 holds the end, so the end needs no special case.
        self._starts = array("q", accumulate(counts, initial=0))
        self._times = array("q", accumulate(map(mul, counts, deltas), initial=-shift))
        self._deltas = array("q", deltas)
        self._deltas.append(0)
        self._count = self._starts[-1]

    @property
    def end(self) -> int:
        """Decode time just after the last sample."""
        return self._times[-1]

    def runs(self) -> tuple[array[int], array[int]]:
        """(sample count, delta) of each run, as the cacheable form keeps them."""
        counts = array("q", map(sub, islice(self._starts, 1, None), self._starts))
        return counts, self._deltas[:-1]

    def _state(self) -> tuple[object, ...]:
        return self._starts, self._times, self._deltas

    def _at(self, index: int) -> int:
        run = bisect_right(self._starts, index) - 1
        return self._times[run] + (index - self._starts[run]) * self._deltas[run]

    def at_many(self, indices: Sequence[int]) -> array[int]:
        """Decode times of the samples at `indices` (each 0 <= i <= len)."""
        if len(self._deltas) == 2:  # one run: no search
            base, delta = self._times[0], self._deltas[0]
            return array("q", map(add, repeat(base), map(mul, indices, repeat(delta))))
        runs = array("q", map(sub, map(bisect_right, repeat(self._starts), indices), repeat(1)))
        into = map(sub, indices, map(self._starts.__getitem__, runs))
        steps = map(mul, into, map(self._deltas.__getitem__, runs))
        return array("q", map(add, map(self._times.__getitem__, runs), steps))

    def span(self, first: int, end: int) -> array[int]:
        """Decode times of samples [first, end); `end` may be len + 1 to include the end."""
        out = array("q")
        starts, times, deltas = self._starts, self._times, self._deltas
        last_run = len(deltas) - 1
        run = bisect_right(starts, first) - 1
        at = first
        while at < end:
            stop = min(starts[run + 1], end) if run < last_run else end
            delta = deltas[run]
            time = times[run] + (at - starts[run]) * delta
            if delta:
                out.extend(range(time, time + (stop - at) * delta, delta))
            else:
                out.extend(repeat(time, stop - at))
            at = stop
            run += 1
        return out

    def index_at(self, time: int) -> int:
        """The first sample decoded at or after `time` (len when there is none)."""
        starts, times, deltas = self._starts, self._times, self._deltas
        last_run = len(deltas) - 1
        run = bisect_left(times, time, 0, last_run)
        if run == 0:
            return 0
        before = run - 1  # its first sample is decoded before `time`
        delta = deltas[before]
        if not delta:
            return starts[run]
        return min(starts[before] - (-(time - times[before]) // delta), starts[run])


def decode_times(counts: array[int], deltas: array[int], total: int, shift: int) -> DecodeTimes:
    """The decode times of `total` samples from stts entries (sample count, delta)."""
    counts, deltas = _normalised_runs(counts, deltas, total, "stts")
    if min(deltas) < 0:
        raise RemuxError("corrupt MP4: negative sample durations")
    return DecodeTimes(counts, deltas, shift)


# -- composition offsets ---------------------------------------------------------------------


class CompositionOffsets(Column):
    """Each sample's composition offset from the ctts runs; empty when every one is 0."""

    __slots__ = ("_starts", "_values")

    def __init__(self, counts: array[int], values: array[int]) -> None:
        self._starts = array("q", accumulate(counts, initial=0))
        self._values = array("q", values)
        self._count = self._starts[-1]

    def runs(self) -> tuple[array[int], array[int]]:
        counts = array("q", map(sub, islice(self._starts, 1, None), self._starts))
        return counts, self._values

    def _state(self) -> tuple[object, ...]:
        return self._starts, self._values

    def _at(self, index: int) -> int:
        return self._values[bisect_right(self._starts, index) - 1]

    def at_many(self, indices: Sequence[int]) -> array[int]:
        runs = map(sub, map(bisect_right, repeat(self._starts), indices), repeat(1))
        return array("q", map(self._values.__getitem__, runs))

    def span(self, first: int, end: int) -> array[int]:
        if first >= end:
            return array("q")
        starts = self._starts
        run = bisect_right(starts, first) - 1
        last = bisect_left(starts, end, run)  # runs [run, last) meet the slice
        inner = starts[run + 1 : last]
        lengths = map(sub, chain(inner, (end,)), chain((first,), inner))
        return array("q", chain.from_iterable(map(repeat, self._values[run:last], lengths)))


def composition_offsets(counts: array[int], values: array[int], total: int) -> CompositionOffsets:
    counts, values = _normalised_runs(counts, values, total, "ctts")
    if not any(values):
        return CompositionOffsets(array("q"), array("q"))
    return CompositionOffsets(counts, values)


# -- sync samples ----------------------------------------------------------------------------


class SyncSamples(Column):
    """1 for a sync sample, else 0; slices are bytes."""

    __slots__ = ("_keys",)

    def __init__(self, keys: array[int] | None, count: int) -> None:
        self._keys = keys  # sorted, distinct, each below count; None: every sample
        self._count = count

    @property
    def every(self) -> bool:
        return self._keys is None

    def keys(self) -> Sequence[int]:
        """The sync samples' indices, in order."""
        return range(self._count) if self._keys is None else self._keys

    def numbers(self) -> array[int] | None:
        """stss sample numbers (1-based), as the cacheable form keeps them; None: every one."""
        if self._keys is None:
            return None
        return array("q", map(add, self._keys, repeat(1)))

    def _state(self) -> tuple[object, ...]:
        return self._count, self._keys

    def _at(self, index: int) -> int:
        keys = self._keys
        if keys is None:
            return 1
        at = bisect_left(keys, index)
        return int(at < len(keys) and keys[at] == index)

    def span(self, first: int, end: int) -> bytes:
        keys = self._keys
        if keys is None:
            return b"\x01" * (end - first)
        flags = bytearray(max(0, end - first))
        for key in islice(keys, bisect_left(keys, first), bisect_left(keys, end)):
            flags[key - first] = 1
        return bytes(flags)


def sync_samples(numbers: array[int] | None, count: int) -> SyncSamples:
    """From stss sample numbers (1-based; None: no stss, every sample is a sync sample).
    Numbers outside the track are ignored."""
    if numbers is None:
        return SyncSamples(None, count)
    if not numbers or (numbers[0] >= 1 and numbers[-1] <= count and increasing(numbers)):
        keys = array("q", map(sub, numbers, repeat(1)))
    else:
        keys = array("q", sorted({number - 1 for number in numbers if 0 < number <= count}))
    return SyncSamples(None if len(keys) == count else keys, count)


def increasing(values: Sequence[int]) -> bool:
    """Strictly increasing."""
    return not any(map(ge, values, islice(values, 1, None)))
