"""Finding the moov from the partial reads the gateway makes (64 KiB at a time)."""

from __future__ import annotations

import os
import struct
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.remux.boxes import TopBox, scan_top_level
from gateway.remux.errors import RemuxError
from gateway.remux.movie import parse_moov

PROBE = 64 * 1024


def find_moov(data: bytes) -> tuple[TopBox, int]:
    """The caller's loop: read 64 KiB, scan, read 64 KiB after the last box, ... (and count
    the reads)."""
    at, chunk, reads = 0, data[:PROBE], 1
    while True:
        boxes = scan_top_level(chunk, at, len(data))
        moov = next((box for box in boxes if box.type == "moov"), None)
        if moov is not None:
            return moov, reads
        at = boxes[-1].offset + boxes[-1].size
        assert at < len(data), "walked off the end without a moov"
        chunk, reads = data[at : at + PROBE], reads + 1


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def test_a_faststart_moov_is_in_the_first_read(sources):
    data = sources.path("faststart.mp4").read_bytes()
    moov, reads = find_moov(data)
    assert reads == 1
    assert [box.type for box in scan_top_level(data[:PROBE], 0, len(data))][:2] == ["ftyp", "moov"]
    assert parse_moov(data[moov.offset : moov.offset + moov.size]).tracks


def test_a_moov_after_the_media_data_is_found_by_reading_past_the_mdat(sources):
    data = sources.path("moov_last.mp4").read_bytes()
    first = scan_top_level(data[:PROBE], 0, len(data))
    assert first[-1].type == "mdat" and first[-1].offset + first[-1].size > PROBE
    moov, reads = find_moov(data)
    assert reads == 2
    assert moov.offset + moov.size == len(data)
    assert parse_moov(data[moov.offset : moov.offset + moov.size]).tracks


def test_a_header_cut_by_the_end_of_the_read_is_left_for_the_next_read():
    data = box(b"ftyp", b"isom" + bytes(12)) + box(b"free", bytes(100)) + box(b"moov", bytes(50))
    cut = len(data) - 50 - 4  # inside the moov's header
    boxes = scan_top_level(data[:cut], 0, len(data))
    assert [b.type for b in boxes] == ["ftyp", "free"]


def test_sizes_zero_and_64_bit_are_resolved():
    ftyp = box(b"ftyp", b"isom" + bytes(4))
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 1000) + bytes(1000)
    rest = struct.pack(">I4s", 0, b"mdat") + bytes(500)
    data = ftyp + large + rest
    assert scan_top_level(data, 0, len(data)) == [
        TopBox("ftyp", 0, 16),
        TopBox("mdat", 16, 1016),
        TopBox("mdat", 1032, 508),
    ]
    # A read starting inside the file reports file offsets.
    assert scan_top_level(data[16:], 16, len(data))[0] == TopBox("mdat", 16, 1016)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<!DOCTYPE html><html><body>nope</body></html>", id="html"),
        pytest.param(os.urandom(4096), id="random"),
        pytest.param(struct.pack(">I4s", 4, b"ftyp") + bytes(100), id="impossible-size"),
        pytest.param(struct.pack(">I4s", 1 << 20, b"ftyp") + bytes(100), id="past-the-end"),
    ],
)
def test_other_bytes_are_not_an_mp4_file(head):
    with pytest.raises(RemuxError, match=r"^not an MP4 file$"):
        scan_top_level(head, 0, len(head))


def test_an_mpegts_file_is_not_an_mp4_file(sources):
    data = sources.path("stream.ts").read_bytes()
    with pytest.raises(RemuxError, match=r"^not an MP4 file$"):
        scan_top_level(data[:PROBE], 0, len(data))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=256), at=st.integers(0, 1 << 40), extra=st.integers(0, 1 << 20))
def test_any_bytes_give_boxes_inside_the_file_or_a_remux_error(data, at, extra):
    size = at + len(data) + extra
    try:
        boxes = scan_top_level(data, at, size)
    except RemuxError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    for found in boxes:
        assert found.offset >= at and found.size >= 8
    assert all(a.offset + a.size == b.offset for a, b in pairwise(boxes))
