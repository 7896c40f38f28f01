"""The Segment Index box (`sidx`, ISO/IEC 14496-12 §8.16.3): where each subsegment of a
single-file DASH Representation lies, and how long it plays.

An on-demand MPD (`SegmentBase@indexRange`) names only the bytes of the index; HLS needs one
byte range and one duration per segment, which is what the index lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from playlists.errors import PlaylistError


class SidxError(PlaylistError):
    """Bytes that are not a usable segment index."""


@dataclass(frozen=True, slots=True)
class SidxReference:
    offset: int  # of the subsegment's first byte in the file
    size: int
    duration: Fraction  # seconds, exact


def parse_sidx(data: bytes, first_byte_offset: int) -> list[tuple[int, int, float]]:
    """(file offset, size, duration in seconds) of every subsegment the first `sidx` lists.

    `data` is what the index range holds, starting at file offset `first_byte_offset`; boxes
    before the `sidx` are skipped, since an index range may start at the top of the file.
    """
    return [(r.offset, r.size, float(r.duration)) for r in sidx_references(data, first_byte_offset)]


def sidx_references(data: bytes, first_byte_offset: int) -> list[SidxReference]:
    """`parse_sidx` with durations as exact fractions, so that sums and ceilings are exact."""
    at = 0
    while at + 8 <= len(data):
        size, kind, header = _box_header(data, at)
        if kind == b"sidx":
            if at + size > len(data):
                raise SidxError("the sidx box is cut short by the end of the index range")
            return _references(data[at + header : at + size], first_byte_offset + at + size)
        at += size
    raise SidxError("no sidx box in the index range")


def _box_header(data: bytes, at: int) -> tuple[int, bytes, int]:
    """(box size, box type, header length) of the box at `at`."""
    size = int.from_bytes(data[at : at + 4], "big")
    kind = data[at + 4 : at + 8]
    header = 8
    if size == 1:
        if at + 16 > len(data):
            raise SidxError("a box header is cut short by the end of the index range")
        size, header = int.from_bytes(data[at + 8 : at + 16], "big"), 16
    elif size == 0:
        size = len(data) - at  # the box runs to the end of the file
    if size < header:
        raise SidxError(f"a {kind!r} box declares an impossible size of {size} bytes")
    return size, kind, header


def _references(payload: bytes, anchor: int) -> list[SidxReference]:
    """The references of one `sidx` payload; `anchor` is the file offset just after the box."""
    if len(payload) < 4:
        raise SidxError("the sidx box is too short")
    version = payload[0]
    if version not in (0, 1):
        raise SidxError(f"sidx version {version} is not known")
    fixed = 4 + 4 + 4 + (8 if version == 0 else 16) + 4
    if len(payload) < fixed:
        raise SidxError("the sidx box is too short")
    timescale = int.from_bytes(payload[8:12], "big")
    if timescale == 0:
        raise SidxError("the sidx timescale is zero")
    wide = 4 if version == 0 else 8
    first_offset = int.from_bytes(payload[12 + wide : 12 + 2 * wide], "big")
    count = int.from_bytes(payload[fixed - 2 : fixed], "big")
    if count == 0:
        raise SidxError("the sidx lists no subsegments")
    if len(payload) < fixed + 12 * count:
        raise SidxError(f"the sidx announces {count} references but holds fewer")
    offset = anchor + first_offset
    references: list[SidxReference] = []
    for index in range(count):
        entry = payload[fixed + 12 * index : fixed + 12 * (index + 1)]
        word = int.from_bytes(entry[0:4], "big")
        if word >> 31:
            # A hierarchical index: the subsegments are listed in further sidx boxes that
            # this range does not hold.
            raise SidxError("the sidx refers to further sidx boxes, which is not supported")
        size = word & 0x7FFFFFFF
        ticks = int.from_bytes(entry[4:8], "big")
        if size == 0:
            raise SidxError("the sidx lists an empty subsegment")
        references.append(SidxReference(offset, size, Fraction(ticks, timescale)))
        offset += size
    return references
