"""Per-sample columns kept as run-length and chunk tables, against sample-by-sample
expansions written here the plain way."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.remux.chunks import SampleOffsets
from gateway.remux.errors import RemuxError
from gateway.remux.tables import composition_offsets, decode_times, sync_samples

SETTINGS = settings(max_examples=300, deadline=None)


def naive_runs(entries: list[tuple[int, int]], total: int) -> list[int]:
    """Each entry's value `count` times; past the table, the last value again; `total` long."""
    values: list[int] = []
    for count, value in entries:
        values += [value] * count
    while len(values) < total:
        values.append(entries[-1][1])
    return values[:total]


def windows(count: int, data: st.DataObject, top: int | None = None) -> list[tuple[int, int]]:
    top = count if top is None else top
    bounds = st.integers(0, top)
    pairs = data.draw(st.lists(st.tuples(bounds, bounds), min_size=1, max_size=8))
    return [(min(a, b), max(a, b)) for a, b in pairs] + [(0, top)]


RUNS = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3000)), min_size=1, max_size=8)


@SETTINGS
@given(entries=RUNS, total=st.integers(1, 40), shift=st.integers(-5000, 5000), data=st.data())
def test_decode_times_are_the_running_sum_of_durations(entries, total, shift, data):
    durations = naive_runs(entries, total)
    expected = [-shift]
    for duration in durations:
        expected.append(expected[-1] + duration)
    counts, deltas = (array("I", column) for column in zip(*entries, strict=True))
    times = decode_times(counts, deltas, total, shift)
    assert list(times) == expected[:-1] and times.end == expected[-1] and len(times) == total
    assert [times[i] for i in range(total)] == expected[:-1]
    for first, end in windows(total, data, total + 1):
        assert list(times.span(first, end)) == expected[first:end]
    picked = sorted(data.draw(st.lists(st.integers(0, total), max_size=10)))
    assert list(times.at_many(picked)) == [expected[i] for i in picked]
    for time in range(
        expected[0] - 2, expected[-1] + 3, max(1, (expected[-1] - expected[0]) // 40)
    ):
        assert times.index_at(time) == bisect_left(expected[:-1], time)


def test_decode_times_refuse_an_empty_table():
    with pytest.raises(RemuxError):
        decode_times(array("I"), array("I"), 3, 0)


SIGNED_RUNS = st.lists(
    st.tuples(st.integers(0, 5), st.integers(-3000, 3000)), min_size=1, max_size=8
)


@SETTINGS
@given(entries=SIGNED_RUNS, total=st.integers(1, 40), data=st.data())
def test_composition_offsets_expand_their_runs(entries, total, data):
    expected = naive_runs(entries, total)
    counts, values = (array("i", column) for column in zip(*entries, strict=True))
    offsets = composition_offsets(counts, values, total)
    if not any(expected):
        assert len(offsets) == 0 and not offsets
        return
    assert list(offsets) == expected
    for first, end in windows(total, data):
        assert list(offsets.span(first, end)) == expected[first:end]
    picked = data.draw(st.lists(st.integers(0, total - 1), max_size=10))
    assert list(offsets.at_many(picked)) == [expected[i] for i in picked]


def test_negative_composition_counts_are_corrupt():
    with pytest.raises(RemuxError, match="negative counts"):
        composition_offsets(array("i", [3, -1]), array("i", [5, 7]), 4)


@SETTINGS
@given(numbers=st.lists(st.integers(-2, 45), max_size=30), total=st.integers(1, 40), data=st.data())
def test_sync_samples_are_the_listed_numbers(numbers, total, data):
    flags = [0] * total
    for number in numbers:
        if 0 < number <= total:
            flags[number - 1] = 1
    sync = sync_samples(array("q", numbers), total)
    assert list(sync) == flags
    assert list(sync.keys()) == [i for i, flag in enumerate(flags) if flag]
    assert sync.every == all(flags)
    for first, end in windows(total, data):
        assert sync.span(first, end) == bytes(flags[first:end])


def test_no_stss_means_every_sample_syncs():
    sync = sync_samples(None, 5)
    assert sync.every and list(sync) == [1] * 5 and sync[1:3] == b"\x01\x01"


# -- sample offsets ------------------------------------------------------------------------------


def naive_offsets(entries: list[tuple[int, int]], chunks: list[int], sizes: list[int]) -> list[int]:
    """Each sample's offset, walking the chunks one sample at a time."""
    per_chunk = []
    for index, (first, count) in enumerate(entries):
        last = entries[index + 1][0] if index + 1 < len(entries) else len(chunks) + 1
        per_chunk += [count] * (last - first)
    offsets: list[int] = []
    for chunk, count in enumerate(per_chunk):
        position = chunks[chunk]
        for _ in range(count):
            if len(offsets) == len(sizes):
                return offsets
            offsets.append(position)
            position += sizes[len(offsets) - 1]
    return offsets


def naive_stretches(offsets: list[int], sizes: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for offset, size in zip(offsets, sizes, strict=True):
        if spans and spans[-1][1] == offset:
            spans[-1] = (spans[-1][0], offset + size)
        else:
            spans.append((offset, offset + size))
    return spans


def stsc(entries: list[tuple[int, int]]) -> array:
    return array("I", [value for first, count in entries for value in (first, count, 1)])


@st.composite
def chunk_layouts(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """stsc entries, chunk offsets and sizes: chunks of 0-4 samples stored one after the
    other with gaps, in chunk order or another."""
    per_chunk = draw(st.lists(st.integers(0, 4), min_size=1, max_size=14))
    entries = []
    for chunk, count in enumerate(per_chunk, 1):
        if not entries or entries[-1][1] != count or draw(st.booleans()):
            entries.append((chunk, count))
    held = sum(per_chunk)
    total = held - draw(st.integers(0, min(held, 3)))
    if total == 0:
        per_chunk.append(1)
        entries.append((len(per_chunk), 1))
        total = 1
    sizes = draw(st.lists(st.integers(0, 40), min_size=total, max_size=total))
    lengths, sample = [], 0
    for count in per_chunk:
        lengths.append(sum(sizes[sample : sample + count]))
        sample += count
    unused = draw(st.integers(0, 2))
    lengths += [5] * unused
    order = list(range(len(lengths)))
    if draw(st.booleans()):
        order = draw(st.permutations(order))
    chunks = [0] * len(lengths)
    position = 100
    for chunk in order:
        position += draw(st.integers(0, 3)) * 10
        chunks[chunk] = position
        position += lengths[chunk]
    return entries, chunks, sizes


@SETTINGS
@given(layout=chunk_layouts(), data=st.data())
def test_sample_offsets_match_the_chunk_walk(layout, data):
    entries, chunks, sizes = layout
    expected = naive_offsets(entries, chunks, sizes)
    offsets = SampleOffsets(stsc(entries), array("q", chunks), array("I", sizes))
    total = len(sizes)
    assert list(offsets) == expected
    assert [offsets[i] for i in range(total)] == expected
    for first, end in windows(total, data):
        assert list(offsets.span(first, end)) == expected[first:end]
        if first < end:
            part = expected[first:end]
            highest = max(part)
            at = len(part) - 1 if part[-1] == highest else part.index(highest)
            extent = (min(part), highest + sizes[first + at], sum(sizes[first:end]))
            assert offsets.extent(first, end) == extent
            assert offsets.stretches(first, end) == naive_stretches(part, sizes[first:end])
    picked = data.draw(st.lists(st.integers(0, total - 1), max_size=10))
    assert offsets.at_many(picked) == [expected[i] for i in picked]


@SETTINGS
@given(layout=chunk_layouts())
def test_offsets_in_file_order_are_recognised(layout):
    entries, chunks, sizes = layout
    offsets = SampleOffsets(stsc(entries), array("q", chunks), array("I", sizes))
    expected = naive_offsets(entries, chunks, sizes)
    ends = [offset + size for offset, size in zip(expected, sizes, strict=True)]
    in_order = all(end <= nxt for end, nxt in zip(ends, expected[1:], strict=False))
    if offsets.ordered:
        # What the plan relies on: no sample starts before an earlier one ends.
        assert in_order
    if all(a < b for a, b in pairwise(chunks)):
        assert offsets.ordered


@pytest.mark.parametrize(
    ("entries", "chunks", "message"),
    [
        ([(2, 1)], 3, "out of order"),
        ([(1, 1), (1, 2)], 3, "out of order"),
        ([(1, 1), (5, 1)], 3, "missing chunks"),
        ([(1, 1)], 2, "fewer samples"),
    ],
)
def test_sample_to_chunk_tables_that_do_not_hold_together_are_corrupt(entries, chunks, message):
    with pytest.raises(RemuxError, match=message):
        SampleOffsets(stsc(entries), array("q", range(0, 100 * chunks, 100)), array("I", [5] * 3))
