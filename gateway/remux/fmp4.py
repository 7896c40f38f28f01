"""fMP4 (ISO BMFF fragments, as HLS and CMAF players take them) from MP4 samples.

The init segment carries each track's original sample entry; a media segment is one
`moof` + `mdat`. Decode times are the MP4 timeline plus the same fixed offset MPEG-TS
segments use, so both kinds agree and no edit list is needed.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Iterable
from itertools import chain, islice, repeat
from operator import and_, sub

from gateway.remux.errors import RemuxError
from gateway.remux.movie import Movie, Track
from gateway.remux.plan import Segment
from gateway.remux.samples import TIMELINE_OFFSET_SECONDS, SegmentData

_LITTLE = sys.byteorder == "little"
_SYNC = 0x02000000  # sample_depends_on = 2 (an I-frame)
_NOT_SYNC = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample
_SAMPLE_FLAGS = (_NOT_SYNC, _SYNC)
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version << 24 | flags), *parts)


# -- init segment ----------------------------------------------------------------------------


def fmp4_init(movie: Movie) -> bytes:
    """ftyp + moov with empty sample tables, the original sample entries and mvex/trex."""
    ftyp = _box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6", b"iso5", b"mp41")
    next_id = max(track.track_id for track in movie.tracks) + 1
    mvhd = _full(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, 1000, 0),
        struct.pack(">IH", 0x10000, 0x100), bytes(10), _MATRIX, bytes(24),
        struct.pack(">I", next_id),
    )  # fmt: skip
    traks = [_trak(track) for track in movie.tracks]
    trexs = [
        _full(b"trex", 0, 0, struct.pack(">IIIII", track.track_id, 1, 0, 0, 0))
        for track in movie.tracks
    ]
    return ftyp + _box(b"moov", mvhd, *traks, _box(b"mvex", *trexs))


def _trak(track: Track) -> bytes:
    video = track.kind == "video"
    tkhd = _full(
        b"tkhd", 0, 3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, track.track_id, 0, 0), bytes(8),
        struct.pack(">HHHH", 0, 0 if video else 1, 0 if video else 0x100, 0), _MATRIX,
        struct.pack(">II", track.width << 16 if video else 0, track.height << 16 if video else 0),
    )  # fmt: skip
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, track.timescale, 0, 0x55C4, 0))
    handler = b"vide" if video else b"soun"
    name = b"VideoHandler\0" if video else b"SoundHandler\0"
    hdlr = _full(b"hdlr", 0, 0, bytes(4), handler, bytes(12), name)
    media_header = _full(b"vmhd", 0, 1, bytes(8)) if video else _full(b"smhd", 0, 0, bytes(4))
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), track.sample_entry),
        _full(b"stts", 0, 0, bytes(4)),
        _full(b"stsc", 0, 0, bytes(4)),
        _full(b"stsz", 0, 0, bytes(8)),
        _full(b"stco", 0, 0, bytes(4)),
    )
    minf = _box(b"minf", media_header, dinf, stbl)
    return _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))


# -- media segments --------------------------------------------------------------------------


def mux_fmp4(movie: Movie, segment: Segment, read: Callable[[int, int], bytes]) -> bytes:
    """`segment` of `movie` as styp + moof + mdat; `read(offset, length)` as for mux_ts."""
    try:
        return _mux(movie, segment, read)
    except RemuxError:
        raise
    except (IndexError, ValueError, OverflowError, struct.error):
        # Tables that parsed but do not hold together (a damaged file).
        raise RemuxError(f"corrupt MP4: segment {segment.number} cannot be remuxed") from None


def _mux(movie: Movie, segment: Segment, read: Callable[[int, int], bytes]) -> bytes:
    data = SegmentData(segment, read)
    trafs: list[bytearray] = []
    offset_at: list[int] = []  # where each trun's data_offset sits inside its traf
    payloads: list[list[memoryview]] = []
    for track, (first, end) in zip(movie.tracks, segment.samples, strict=True):
        if first >= end:
            continue
        traf, at = _traf(track, first, end)
        trafs.append(traf)
        offset_at.append(at)
        payloads.append(data.samples(track, first, end))
    mfhd = _full(b"mfhd", 0, 0, struct.pack(">I", segment.number + 1))
    moof_size = 8 + len(mfhd) + sum(len(traf) for traf in trafs)
    data_offset = moof_size + 8  # the first sample follows the mdat header
    for traf, at, views in zip(trafs, offset_at, payloads, strict=True):
        traf[at : at + 4] = struct.pack(">i", data_offset)
        data_offset += sum(map(len, views))
    mdat_size = data_offset - moof_size
    styp = _box(b"styp", b"msdh", bytes(4), b"msdh", b"msix")
    head = [styp, struct.pack(">I", moof_size), b"moof", mfhd, *trafs]
    head.append(struct.pack(">I", mdat_size) + b"mdat")
    return b"".join(chain(head, chain.from_iterable(payloads)))


def _traf(track: Track, first: int, end: int) -> tuple[bytearray, int]:
    """A traf for samples [first, end), and the position of its trun's data_offset."""
    count = end - first
    video = track.kind == "video"
    dts = track.dts.span(first, end + 1)  # and the decode time after the last
    columns: list[Iterable[int]] = [
        map(and_, map(sub, islice(dts, 1, None), dts), repeat(0xFFFFFFFF)),  # durations
        track.sizes[first:end],
    ]
    trun_flags = 0x000001 | 0x000100 | 0x000200  # data offset, durations, sizes
    version = 0
    if video:
        trun_flags |= 0x000400
        columns.append(map(_SAMPLE_FLAGS.__getitem__, track.sync[first:end]))
    if track.cts:
        trun_flags |= 0x000800
        offsets = track.cts[first:end]
        if min(offsets) < 0:
            version = 1
        columns.append(map(and_, offsets, repeat(0xFFFFFFFF)))
    width = len(columns)
    entries = array("I", bytes(4 * width * count))
    for column, values in enumerate(columns):
        entries[column::width] = array("I", values)
    if _LITTLE:
        entries.byteswap()

    # Audio: every sample is a sync sample, said once in tfhd instead of per sample.
    tfhd_flags = 0x020000 if video else 0x020020  # default-base-is-moof (+ default flags)
    tfhd_fields = struct.pack(">I", track.track_id) + (b"" if video else struct.pack(">I", _SYNC))
    tfhd = _full(b"tfhd", 0, tfhd_flags, tfhd_fields)
    base = dts[0] + TIMELINE_OFFSET_SECONDS * track.timescale
    tfdt = _full(b"tfdt", 1, 0, struct.pack(">Q", max(base, 0)))
    trun_head = struct.pack(">Ii", count, 0)
    trun = _full(b"trun", version, trun_flags, trun_head, entries.tobytes())
    traf = bytearray(_box(b"traf", tfhd, tfdt, trun))
    # traf header 8, then tfhd and tfdt, then the trun's header 12 and sample count 4.
    return traf, 8 + len(tfhd) + len(tfdt) + 12 + 4
