"""Top-level ISO BMFF box headers, read from partial reads of a file."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.remux.errors import RemuxError

# Boxes an MP4 file may open with; anything else at offset 0 means it is not one.
_FIRST_BOXES = frozenset(
    {"ftyp", "styp", "moov", "free", "skip", "wide", "mdat", "pdin", "uuid", "sidx", "junk"}
)


@dataclass(frozen=True, slots=True)
class TopBox:
    type: str  # "ftyp", "moov", "mdat", "free", ...
    offset: int  # file offset of the box start
    size: int  # whole box size, header included


def box_type(raw: bytes) -> str | None:
    """The four-character code, or None when the bytes cannot be one (corrupt or not MP4)."""
    # Printable ASCII, plus © which QuickTime metadata atoms use.
    if all(0x20 <= byte < 0x7F or byte == 0xA9 for byte in raw):
        return raw.decode("latin-1")
    return None


def scan_top_level(data: bytes, at: int, file_size: int) -> list[TopBox]:
    """Headers of consecutive top-level boxes starting at file offset `at`, as many as have
    their header inside `data` (data[0] is the byte at `at`); the last body may extend past
    `data`. A box of size 0 runs to `file_size`."""
    boxes: list[TopBox] = []
    pos = 0
    end = len(data)
    while pos + 8 <= end and at + pos < file_size:
        offset = at + pos
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = box_type(data[pos + 4 : pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > end:
                break  # the 64-bit size is in the next read
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = file_size - offset
        if kind is None or (offset == 0 and kind not in _FIRST_BOXES):
            if offset == 0:
                raise RemuxError("not an MP4 file")
            raise RemuxError(f"corrupt MP4: no box header at byte {offset}")
        if size < header or (offset == 0 and size > file_size):
            if offset == 0:
                raise RemuxError("not an MP4 file")
            raise RemuxError(f"corrupt MP4: box {kind!r} at byte {offset} has an impossible size")
        # A later box may run past the end of a truncated file: the caller finds the moov or
        # reports there is none, and a sample past the end fails when it is fetched.
        boxes.append(TopBox(kind, offset, size))
        pos += size
    if at == 0 and not boxes:
        raise RemuxError("not an MP4 file")
    return boxes
