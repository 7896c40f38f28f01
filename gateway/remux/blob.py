"""A parsed movie's cacheable binary form: versioned, zlib-packed, for a shared cache.

It keeps each track's tables as `parse_moov` holds them (sizes, stts / ctts runs, stss,
stsc, chunk offsets), and loading rebuilds the columns through the same constructors that
parsing uses, so a loaded movie is validated exactly as a parsed one.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array

from gateway.remux.chunks import SampleOffsets
from gateway.remux.errors import RemuxError
from gateway.remux.movie import Movie, Track
from gateway.remux.tables import (
    CompositionOffsets,
    composition_offsets,
    decode_times,
    sync_samples,
)

_LITTLE = sys.byteorder == "little"
_MAGIC = b"RMXM"
# 2: tables instead of expanded per-sample columns. Another version is refused on load.
BLOB_VERSION = 2
_MAX_BLOB = 1 << 30
_LEVEL = 1  # the sizes and offsets barely pack better at 6, and take 4 times as long
_TRACK_HEAD = struct.Struct("<IIIIIIq")  # track_id timescale w h rate channels shift
_TYPECODES = {b"I": "I", b"q": "q"}
_KINDS = ("video", "audio")


def _put_bytes(parts: list[bytes], data: bytes) -> None:
    parts.append(struct.pack("<I", len(data)))
    parts.append(data)


def _planes(data: bytes, width: int) -> bytes:
    """Byte k of every value, for each k: neighbouring values share their high bytes, so
    zlib packs these planes 2-3 times smaller than the values themselves."""
    return b"".join(data[k::width] for k in range(width))


def _unplanes(planes: memoryview, width: int) -> bytearray:
    count, rest = divmod(len(planes), width)
    if rest:
        raise RemuxError("corrupt movie index")
    data = bytearray(len(planes))
    for k in range(width):
        data[k::width] = planes[k * count : (k + 1) * count]
    return data


def _put_array(parts: list[bytes], values: array[int]) -> None:
    if values.typecode not in _TYPECODES.values():
        values = array("q", values)
    if not _LITTLE:
        values = array(values.typecode, values)
        values.byteswap()
    parts.append(values.typecode.encode())
    _put_bytes(parts, _planes(values.tobytes(), values.itemsize))


def dump_movie(movie: Movie) -> bytes:
    """A compact, versioned binary form of `movie`."""
    parts: list[bytes] = [struct.pack("<dI", movie.duration, len(movie.tracks))]
    for track in movie.tracks:
        parts.append(
            _TRACK_HEAD.pack(
                track.track_id, track.timescale, track.width, track.height,
                track.sample_rate, track.channels, track.shift,
            )
        )  # fmt: skip
        for text in (track.kind, track.codec, track.codecs):
            _put_bytes(parts, text.encode("utf-8"))
        _put_bytes(parts, track.config)
        _put_bytes(parts, track.sample_entry)
        _put_array(parts, track.sizes)
        for column in (track.dts, track.cts):
            counts, values = column.runs()
            _put_array(parts, counts)
            _put_array(parts, values)
        numbers = track.sync.numbers()
        parts.append(b"\x00" if numbers is None else b"\x01")
        _put_array(parts, array("q") if numbers is None else numbers)
        _put_array(parts, track.offsets.stsc)
        _put_array(parts, track.offsets.chunks)
    return _MAGIC + bytes((BLOB_VERSION,)) + zlib.compress(b"".join(parts), _LEVEL)


def load_movie(data: bytes) -> Movie:
    """The Movie `dump_movie` wrote; RemuxError for another version or a corrupt blob."""
    if data[:4] != _MAGIC:
        raise RemuxError("not a movie index")
    if data[4:5] != bytes((BLOB_VERSION,)):
        raise RemuxError("the movie index has another version")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(data[5:], _MAX_BLOB)
        if inflater.unconsumed_tail or not inflater.eof:
            raise RemuxError("corrupt movie index")
        return _Reader(memoryview(raw)).movie()
    except (
        RemuxError,
        zlib.error, struct.error, ValueError, IndexError, OverflowError, UnicodeDecodeError,
        MemoryError,
    ):  # fmt: skip
        raise RemuxError("corrupt movie index") from None


class _Reader:
    def __init__(self, raw: memoryview) -> None:
        self._raw = raw
        self._pos = 0

    def take(self, length: int) -> memoryview:
        if length < 0 or self._pos + length > len(self._raw):
            raise RemuxError("truncated")
        chunk = self._raw[self._pos : self._pos + length]
        self._pos += length
        return chunk

    def blob(self) -> memoryview:
        return self.take(struct.unpack("<I", self.take(4))[0])

    def array(self) -> array[int]:
        typecode = _TYPECODES.get(bytes(self.take(1)))
        if typecode is None:
            raise RemuxError("unknown column type")
        values = array(typecode)
        values.frombytes(_unplanes(self.blob(), values.itemsize))
        if not _LITTLE:
            values.byteswap()
        return values

    def movie(self) -> Movie:
        duration, count = struct.unpack("<dI", self.take(12))
        tracks = [self.track() for _ in range(count)]
        if self._pos != len(self._raw) or not tracks:
            raise RemuxError("trailing bytes")
        return Movie(duration, tracks)

    def track(self) -> Track:
        track_id, timescale, width, height, rate, channels, shift = _TRACK_HEAD.unpack(
            self.take(_TRACK_HEAD.size)
        )
        kind, codec, codecs = (bytes(self.blob()).decode("utf-8") for _ in range(3))
        config, entry = bytes(self.blob()), bytes(self.blob())
        if (
            kind not in _KINDS
            or timescale <= 0
            or width > 0xFFFF
            or height > 0xFFFF
            or abs(shift) >= 1 << 47
        ):
            raise RemuxError("impossible track header")
        sizes = self.array()
        total = len(sizes)
        if not total:
            raise RemuxError("a track without samples")
        track = Track(
            track_id, kind, codec, codecs, timescale, width, height, rate, channels, config,
            entry, shift, sizes,
        )  # fmt: skip
        track.dts = decode_times(self.array(), self.array(), total, shift)
        counts, values = self.array(), self.array()
        if values:
            track.cts = composition_offsets(counts, values, total)
        elif counts:
            raise RemuxError("composition offsets without values")
        else:
            track.cts = CompositionOffsets(array("q"), array("q"))
        every = bytes(self.take(1))
        numbers = self.array()
        if every not in (b"\x00", b"\x01"):
            raise RemuxError("bad sync flag")
        track.sync = sync_samples(None if every == b"\x00" else numbers, total)
        track.offsets = SampleOffsets(self.array(), self.array(), sizes)
        return track
