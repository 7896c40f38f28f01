"""A `moov` box parsed into per-track sample tables.

The tables stay in the compact form the file has them (runs of decode durations and
composition offsets, sync sample numbers, chunks), and each per-sample column computes what
it is asked for from those (`gateway.remux.tables`): a playlist asks for keyframes and
segment boundaries, a segment for a few hundred samples, and nothing walks every sample of
an hour of video. Their cacheable form is in `gateway.remux.blob`.

Times: `Track.dts` already has the track's edit-list shift subtracted, so `dts + cts` is the
presentation time on one timeline shared by every track (0 = where the movie starts), and
A/V stay in sync. Values can be negative (B-frame delay, AAC priming); the muxers add a
fixed offset.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from operator import add

from gateway.remux.chunks import SampleOffsets
from gateway.remux.errors import RemuxError
from gateway.remux.tables import (
    CompositionOffsets,
    DecodeTimes,
    SyncSamples,
    composition_offsets,
    decode_times,
    sync_samples,
)

_LITTLE = sys.byteorder == "little"
# Typecodes whose sizes the binary forms rely on.
assert array("I").itemsize == 4 and array("i").itemsize == 4 and array("q").itemsize == 8

MAX_SAMPLES = 5_000_000  # per track: ~18 h of 60 fps video; bounds memory on corrupt input

_VIDEO, _AUDIO = "video", "audio"
_ENCRYPTED = frozenset({"encv", "enca", "encs", "enct"})


def _no_times() -> DecodeTimes:
    return DecodeTimes(array("q"), array("q"), 0)


def _no_composition() -> CompositionOffsets:
    return CompositionOffsets(array("q"), array("q"))


def _no_offsets() -> SampleOffsets:
    return SampleOffsets(array("I", (1, 0, 1)), array("I"), array("I"))


@dataclass(eq=True)
class Track:
    track_id: int
    kind: str  # "video" | "audio"
    codec: str  # sample entry fourcc: avc1, hvc1, mp4a, ac-3, Opus, vp09, ...
    codecs: str  # RFC 6381: "avc1.64001e", "mp4a.40.2"
    timescale: int
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    config: bytes = b""  # avcC / hvcC / vpcC / av1C / dOps payload, or AudioSpecificConfig
    sample_entry: bytes = b""  # the raw stsd entry, header included
    shift: int = 0  # edit-list shift (track ticks) already subtracted from `dts`
    sizes: array[int] = field(default_factory=lambda: array("I"))
    dts: DecodeTimes = field(default_factory=_no_times)  # shifted, track ticks
    cts: CompositionOffsets = field(default_factory=_no_composition)
    sync: SyncSamples = field(default_factory=lambda: SyncSamples(None, 0))
    offsets: SampleOffsets = field(default_factory=_no_offsets)  # file offset per sample

    @property
    def sample_count(self) -> int:
        return len(self.sizes)

    @property
    def nal_length_size(self) -> int:
        """Bytes in each NAL unit's length prefix (H.264 / H.265)."""
        if self.codec in ("avc1", "avc3") and len(self.config) > 4:
            return (self.config[4] & 3) + 1
        if self.codec in ("hvc1", "hev1") and len(self.config) > 21:
            return (self.config[21] & 3) + 1
        return 4

    def end_seconds(self) -> float:
        """Where the track's presentation ends (the later of decode end and the last frames'
        display end, which B-frame reordering can push past it)."""
        end = self.dts.end
        if self.cts:
            count = len(self.sizes)
            first = max(0, count - 64)
            following = self.dts.span(first + 1, count + 1)
            end = max(end, *map(add, self.cts.span(first, count), following))
        return end / self.timescale


@dataclass(eq=True)
class Movie:
    duration: float  # seconds, where the longest track's presentation ends
    tracks: list[Track]

    @property
    def video(self) -> Track | None:
        return next((track for track in self.tracks if track.kind == _VIDEO), None)

    @property
    def audio(self) -> list[Track]:
        return [track for track in self.tracks if track.kind == _AUDIO]


# -- box walking ---------------------------------------------------------------------------


def _children(buf: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, box end) of each box in buf[start:end]."""
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(buf[pos : pos + 4], "big")
        kind = buf[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            size = int.from_bytes(buf[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise RemuxError(f"corrupt MP4: box {_fourcc(kind)!r} overruns its parent")
        yield kind, pos + header, pos + size
        pos += size


def _child(buf: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for found, body, box_end in _children(buf, start, end):
        if found == kind:
            return body, box_end
    return None


def _fourcc(raw: bytes) -> str:
    return raw.decode("latin-1")


def _u16(buf: bytes, at: int) -> int:
    return int.from_bytes(buf[at : at + 2], "big")


def _u32(buf: bytes, at: int) -> int:
    return int.from_bytes(buf[at : at + 4], "big")


def _u64(buf: bytes, at: int) -> int:
    return int.from_bytes(buf[at : at + 8], "big")


def _need(start: int, end: int, length: int, what: str) -> None:
    if end - start < length:
        raise RemuxError(f"corrupt MP4: {what} box is truncated")


def _big_endian(buf: bytes, start: int, count: int, typecode: str) -> array[int]:
    values = array(typecode)
    values.frombytes(buf[start : start + count * values.itemsize])
    if len(values) != count:
        raise RemuxError("corrupt MP4: a sample table is truncated")
    if _LITTLE:
        values.byteswap()
    return values


# -- parsing ---------------------------------------------------------------------------------


def parse_moov(moov: bytes) -> Movie:
    """The A/V tracks of a whole `moov` box (header included) and their sample tables."""
    try:
        return _parse_moov(bytes(moov))
    except RemuxError:
        raise
    except (ValueError, IndexError, struct.error, OverflowError, ZeroDivisionError, MemoryError):
        raise RemuxError("corrupt MP4: the moov box cannot be read") from None


def _parse_moov(buf: bytes) -> Movie:
    if len(buf) < 8 or buf[4:8] != b"moov":
        raise RemuxError("not a moov box")
    if _u32(buf, 0) > len(buf):
        raise RemuxError("corrupt MP4: the moov box is truncated")
    boxes = list(_children(buf, 0, len(buf)))
    if len(boxes) != 1:
        raise RemuxError("not a moov box")
    _, start, end = boxes[0]
    movie_timescale = 0
    traks: list[tuple[int, int]] = []
    fragmented = False
    for kind, body, box_end in _children(buf, start, end):
        if kind == b"mvhd":
            _need(body, box_end, 24, "mvhd")
            movie_timescale = _u32(buf, body + (20 if buf[body] == 1 else 12))
        elif kind == b"trak":
            traks.append((body, box_end))
        elif kind == b"mvex":
            fragmented = True
    if fragmented:
        raise RemuxError("fragmented MP4 is not supported")
    if movie_timescale <= 0:
        raise RemuxError("corrupt MP4: the movie has no timescale")
    parsed = [_parse_trak(buf, body, box_end, movie_timescale) for body, box_end in traks]
    tracks = [track for track in parsed if track is not None and track.sample_count]
    videos = [track for track in tracks if track.kind == _VIDEO]
    audios = [track for track in tracks if track.kind == _AUDIO]
    # One picture: players show the first video track of a muxed stream anyway.
    kept = videos[:1] + audios
    if not kept:
        raise RemuxError("no audio or video samples in the file")
    return Movie(max(track.end_seconds() for track in kept), kept)


def _parse_trak(buf: bytes, start: int, end: int, movie_timescale: int) -> Track | None:
    track_id = 0
    mdia: tuple[int, int] | None = None
    edits: tuple[int, int] | None = None
    for kind, body, box_end in _children(buf, start, end):
        if kind == b"tkhd":
            _need(body, box_end, 24, "tkhd")
            track_id = _u32(buf, body + (20 if buf[body] == 1 else 12))
        elif kind == b"mdia":
            mdia = (body, box_end)
        elif kind == b"edts":
            edits = _child(buf, body, box_end, b"elst")
    if mdia is None:
        return None
    timescale = 0
    handler = b""
    stbl: tuple[int, int] | None = None
    for kind, body, box_end in _children(buf, *mdia):
        if kind == b"mdhd":
            _need(body, box_end, 24, "mdhd")
            timescale = _u32(buf, body + (20 if buf[body] == 1 else 12))
        elif kind == b"hdlr":
            _need(body, box_end, 12, "hdlr")
            handler = buf[body + 8 : body + 12]
        elif kind == b"minf":
            stbl = _child(buf, body, box_end, b"stbl")
    kind_name = {b"vide": _VIDEO, b"soun": _AUDIO}.get(handler)
    if kind_name is None or stbl is None:
        return None  # subtitles, timecode, hint and other tracks are not remuxed
    if timescale <= 0:
        raise RemuxError(f"corrupt MP4: track {track_id} has no timescale")
    track = Track(track_id, kind_name, "", "", timescale)
    tables = _parse_stbl(buf, *stbl, track)
    if tables is None:
        return None
    track.shift = _edit_shift(buf, edits, timescale, movie_timescale)
    if abs(track.shift) >= 1 << 47:
        raise RemuxError(f"corrupt MP4: track {track_id} has an impossible edit list")
    _build_columns(buf, tables, track)
    return track


def _edit_shift(
    buf: bytes, elst: tuple[int, int] | None, timescale: int, movie_timescale: int
) -> int:
    """Ticks to subtract from decode times so that the edit list's start is time 0: the
    first edit's media time, less any leading empty edits (media time -1)."""
    if elst is None:
        return 0
    body, end = elst
    _need(body, end, 8, "elst")
    version = buf[body]
    count = _u32(buf, body + 4)
    width = 20 if version == 1 else 12
    empty = 0
    pos = body + 8
    for _ in range(min(count, (end - pos) // width)):
        if version == 1:
            duration = _u64(buf, pos)
            media_time = int.from_bytes(buf[pos + 8 : pos + 16], "big", signed=True)
        else:
            duration = _u32(buf, pos)
            media_time = int.from_bytes(buf[pos + 4 : pos + 8], "big", signed=True)
        pos += width
        if media_time == -1:
            empty += duration
            continue
        return media_time - empty * timescale // movie_timescale
    return 0


_Tables = dict[bytes, tuple[int, int]]  # box type → (body start, box end) in an stbl


def _parse_stbl(buf: bytes, start: int, end: int, track: Track) -> _Tables | None:
    """The sample description and sizes; the other tables' places (None: no samples)."""
    tables: _Tables = {}
    for kind, body, box_end in _children(buf, start, end):
        tables.setdefault(kind, (body, box_end))
    if b"stsd" not in tables:
        raise RemuxError(f"corrupt MP4: track {track.track_id} has no sample descriptions")
    _parse_stsd(buf, *tables[b"stsd"], track)

    sizes = _sizes(buf, tables)
    count = len(sizes)
    if count == 0:
        return None
    if count > MAX_SAMPLES:
        raise RemuxError(f"track {track.track_id} has too many samples ({count})")
    if b"stts" not in tables or b"stsc" not in tables:
        raise RemuxError(f"corrupt MP4: track {track.track_id} has no sample timing or chunks")
    track.sizes = sizes
    return tables


def _build_columns(buf: bytes, tables: _Tables, track: Track) -> None:
    count = len(track.sizes)
    stts = _pairs(buf, *tables[b"stts"], 8, "I")
    track.dts = decode_times(stts[0::2], stts[1::2], count, track.shift)
    if b"ctts" in tables:
        # Version 0 offsets are unsigned, but writers put negative ones there too; read signed.
        ctts = _pairs(buf, *tables[b"ctts"], 8, "i")
        track.cts = composition_offsets(ctts[0::2], ctts[1::2], count)
    track.sync = _sync(buf, tables.get(b"stss"), count)
    track.offsets = SampleOffsets(
        _stsc(buf, *tables[b"stsc"]), _chunk_offsets(buf, tables), track.sizes
    )


def _sizes(buf: bytes, tables: dict[bytes, tuple[int, int]]) -> array[int]:
    if b"stsz" in tables:
        body, end = tables[b"stsz"]
        _need(body, end, 12, "stsz")
        size, count = _u32(buf, body + 4), _u32(buf, body + 8)
        if count > MAX_SAMPLES:
            raise RemuxError(f"a track has too many samples ({count})")
        if size:
            return array("I", [size]) * count
        return _big_endian(buf, body + 12, count, "I")
    if b"stz2" in tables:
        body, end = tables[b"stz2"]
        _need(body, end, 12, "stz2")
        bits, count = buf[body + 7], _u32(buf, body + 8)
        if count > MAX_SAMPLES:
            raise RemuxError(f"a track has too many samples ({count})")
        data = buf[body + 12 : end]
        if bits == 8:
            values = array("I", data[:count])
        elif bits == 16:
            values = array("I", _big_endian(data, 0, count, "H"))
        elif bits == 4:
            nibbles = chain.from_iterable((byte >> 4, byte & 15) for byte in data)
            values = array("I", nibbles)[:count]
        else:
            raise RemuxError("corrupt MP4: stz2 has an unknown field size")
        if len(values) != count:
            raise RemuxError("corrupt MP4: a sample table is truncated")
        return values
    raise RemuxError("corrupt MP4: a track has no sample sizes")


def _pairs(buf: bytes, body: int, end: int, header: int, typecode: str) -> array[int]:
    _need(body, end, header, "sample table")
    count = _u32(buf, body + header - 4)
    if count * 8 > end - body - header:
        raise RemuxError("corrupt MP4: a sample table is truncated")
    return _big_endian(buf, body + header, count * 2, typecode)


def _sync(buf: bytes, stss: tuple[int, int] | None, count: int) -> SyncSamples:
    if stss is None:
        return sync_samples(None, count)  # no table: every sample is a sync sample
    body, end = stss
    _need(body, end, 8, "stss")
    numbers = _big_endian(buf, body + 8, min(_u32(buf, body + 4), (end - body - 8) // 4), "I")
    return sync_samples(numbers, count)


def _chunk_offsets(buf: bytes, tables: _Tables) -> array[int]:
    for kind, typecode in ((b"stco", "I"), (b"co64", "q")):
        if kind in tables:
            body, end = tables[kind]
            _need(body, end, 8, kind.decode())
            count = _u32(buf, body + 4)
            if count * (4 if typecode == "I" else 8) > end - body - 8:
                raise RemuxError("corrupt MP4: a sample table is truncated")
            return _big_endian(buf, body + 8, count, typecode)
    raise RemuxError("corrupt MP4: a track has no chunk offsets")


def _stsc(buf: bytes, body: int, end: int) -> array[int]:
    _need(body, end, 8, "stsc")
    count = _u32(buf, body + 4)
    if count * 12 > end - body - 8:
        raise RemuxError("corrupt MP4: a sample table is truncated")
    return _big_endian(buf, body + 8, count * 3, "I")


# -- sample descriptions -----------------------------------------------------------------------


AAC_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip


def _parse_stsd(buf: bytes, body: int, end: int, track: Track) -> None:
    _need(body, end, 16, "stsd")
    entries = list(_children(buf, body + 8, end))
    if not entries:
        raise RemuxError(f"corrupt MP4: track {track.track_id} has no sample descriptions")
    kind, entry_body, entry_end = entries[0]
    header_start = entry_body - (16 if _u32(buf, entry_body - 8) == 1 else 8)
    codec = _fourcc(kind)
    if codec in _ENCRYPTED:
        raise RemuxError("encrypted MP4 is not supported")
    track.codec = codec
    track.sample_entry = buf[header_start:entry_end]
    if track.kind == _VIDEO:
        _need(entry_body, entry_end, 78, codec)
        track.width = _u16(buf, entry_body + 24)
        track.height = _u16(buf, entry_body + 26)
        _video_config(buf, entry_body + 78, entry_end, track)
    else:
        _need(entry_body, entry_end, 28, codec)
        version = _u16(buf, entry_body + 8)
        track.channels = _u16(buf, entry_body + 16)
        track.sample_rate = _u32(buf, entry_body + 24) >> 16
        extra = {1: 16, 2: 36}.get(version, 0)
        if version == 2 and entry_end - entry_body >= 48:
            rate = struct.unpack(">d", buf[entry_body + 32 : entry_body + 40])[0]
            track.sample_rate = int(rate) if 0 < rate < 1 << 31 else 0
            track.channels = _u32(buf, entry_body + 40)
        _audio_config(buf, entry_body + 28 + extra, entry_end, track)


def _video_config(buf: bytes, start: int, end: int, track: Track) -> None:
    boxes = {kind: (body, box_end) for kind, body, box_end in _children(buf, start, end)}
    codec = track.codec
    track.codecs = codec
    if codec in ("avc1", "avc3") and b"avcC" in boxes:
        config = buf[slice(*boxes[b"avcC"])]
        _need(0, len(config), 7, "avcC")
        track.config = config
        track.codecs = f"{codec}.{config[1]:02x}{config[2]:02x}{config[3]:02x}"
    elif codec in ("hvc1", "hev1") and b"hvcC" in boxes:
        config = buf[slice(*boxes[b"hvcC"])]
        _need(0, len(config), 23, "hvcC")
        track.config = config
        track.codecs = _hevc_codecs(codec, config)
    elif codec == "vp09" and b"vpcC" in boxes:
        config = buf[slice(*boxes[b"vpcC"])]
        _need(0, len(config), 8, "vpcC")
        track.config = config
        track.codecs = f"vp09.{config[4]:02d}.{config[5]:02d}.{config[6] >> 4:02d}"
    elif codec == "av01" and b"av1C" in boxes:
        config = buf[slice(*boxes[b"av1C"])]
        _need(0, len(config), 4, "av1C")
        track.config = config
        profile, level = config[1] >> 5, config[1] & 31
        tier = "H" if config[2] & 0x80 else "M"
        depth = 12 if config[2] & 0x20 else 10 if config[2] & 0x40 else 8
        track.codecs = f"av01.{profile}.{level:02d}{tier}.{depth:02d}"


def _hevc_codecs(codec: str, config: bytes) -> str:
    """ISO/IEC 14496-15 Annex E: hvc1.<space><profile>.<compat>.<tier><level>.<constraints>."""
    space = "" if config[1] >> 6 == 0 else "ABC"[(config[1] >> 6) - 1]
    profile = config[1] & 31
    compat = int(f"{_u32(config, 2):032b}"[::-1], 2)  # bit-reversed
    tier = "H" if config[1] & 0x20 else "L"
    constraints = list(config[6:12])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    tail = "".join(f".{byte:X}" for byte in constraints)
    return f"{codec}.{space}{profile}.{compat:X}.{tier}{config[12]}{tail}"


def _audio_config(buf: bytes, start: int, end: int, track: Track) -> None:
    boxes = {kind: (body, box_end) for kind, body, box_end in _children(buf, start, end)}
    codec = track.codec
    track.codecs = {"ac-3": "ac-3", "ec-3": "ec-3", "Opus": "opus", "fLaC": "flac"}.get(
        codec, codec
    )
    if codec == ".mp3":
        track.codecs = "mp4a.40.34"
    elif codec == "mp4a":
        if b"esds" in boxes:
            object_type, config = _esds(buf[slice(*boxes[b"esds"])])
        elif b"wave" in boxes:  # QuickTime wraps the esds in a wave atom
            wave = _child(buf, *boxes[b"wave"], b"esds")
            object_type, config = _esds(buf[slice(*wave)]) if wave else (0x40, b"")
        else:
            object_type, config = 0x40, b""
        track.config = config
        if object_type in (0x69, 0x6B):
            track.codecs = "mp4a.40.34"  # MP3, as HLS names it
        elif object_type in (0x40, 0x66, 0x67, 0x68):
            track.codecs = f"mp4a.40.{_aac_object_type(config)}"
            rate, channels = _aac_rate_channels(config)
            track.sample_rate = rate or track.sample_rate
            track.channels = channels or track.channels
        else:
            track.codecs = f"mp4a.{object_type:02X}"
    else:
        for kind in (b"dOps", b"dac3", b"dec3", b"dfLa"):
            if kind in boxes:
                track.config = buf[slice(*boxes[kind])]
        # The sample entry's channel count is a fixed 2 for these; the real one is here.
        config = track.config
        if codec == "ac-3" and len(config) >= 3:
            bits = int.from_bytes(config[:3], "big")
            track.channels = _AC3_CHANNELS[bits >> 11 & 7] + (bits >> 10 & 1)
        elif codec == "ec-3" and len(config) >= 5:
            bits = int.from_bytes(config[2:5], "big")  # the first independent substream
            track.channels = _AC3_CHANNELS[bits >> 9 & 7] + (bits >> 8 & 1)
        elif codec == "Opus" and len(config) >= 2:
            track.channels = config[1]


_AC3_CHANNELS = (2, 1, 2, 3, 3, 4, 4, 5)  # by acmod, before the LFE channel


def _esds(body: bytes) -> tuple[int, bytes]:
    """(objectTypeIndication, DecoderSpecificInfo) of an esds box body."""
    pos = 4  # version and flags
    object_type, config = 0x40, b""

    def descriptor(at: int) -> tuple[int, int, int]:
        tag = body[at]
        at += 1
        length = 0
        for _ in range(4):
            byte = body[at]
            at += 1
            length = length << 7 | byte & 0x7F
            if not byte & 0x80:
                break
        return tag, at, at + length

    tag, pos, end = descriptor(pos)
    if tag != 3:
        return object_type, config
    flags = body[pos + 2]
    pos += 3
    if flags & 0x80:
        pos += 2
    if flags & 0x40:
        pos += 1 + body[pos]
    if flags & 0x20:
        pos += 2
    while pos < end:
        tag, inner, inner_end = descriptor(pos)
        if tag == 4:
            object_type = body[inner]
            pos = inner + 13
            while pos < inner_end:
                tag, data, data_end = descriptor(pos)
                if tag == 5:
                    config = body[data:data_end]
                pos = data_end
            break
        pos = inner_end
    return object_type, config


def _aac_object_type(config: bytes) -> int:
    if len(config) < 2:
        return 2
    kind = config[0] >> 3
    if kind == 31:
        kind = 32 + ((config[0] & 7) << 3 | config[1] >> 5)
    return kind


def _aac_rate_channels(config: bytes) -> tuple[int, int]:
    """Sample rate and channel configuration of an AudioSpecificConfig (0 when unknown)."""
    if len(config) < 2:
        return 0, 0
    bits = int.from_bytes(config[:5].ljust(5, b"\0"), "big")
    pos = 40 - 5
    if config[0] >> 3 == 31:
        pos -= 6
    index = bits >> (pos - 4) & 15
    pos -= 4
    if index == 15:
        rate = bits >> (pos - 24) & 0xFFFFFF
        pos -= 24
    else:
        rate = AAC_RATES[index] if index < len(AAC_RATES) else 0
    channels = bits >> (pos - 4) & 15 if pos >= 4 else 0
    return rate, channels
