"""One HLS segment as MPEG-TS (ISO/IEC 13818-1), remuxed from MP4 samples.

Every segment is self-contained (PAT and PMT first, SPS/PPS before every keyframe) and they
also join up: timestamps come from the MP4 timeline, and each PID's packet count in a
segment is padded to a multiple of 16, so continuity counters start at 0 in every segment
and still run on without a break from one segment into the next.

Packets are built from slices of one PES buffer per access unit; the per-packet work left
to Python is iterator plumbing that runs in C.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, cycle, islice
from typing import NamedTuple

from gateway.remux.errors import RemuxError
from gateway.remux.movie import AAC_RATES, Movie, Track
from gateway.remux.plan import Segment
from gateway.remux.samples import TIMELINE_OFFSET_SECONDS, SegmentData

PACKET = 188
_BODY = 184
_PMT_PID = 0x1000
_FIRST_PID = 0x100
_CLOCK = 90_000
_OFFSET = TIMELINE_OFFSET_SECONDS * _CLOCK
_PCR_LEAD = 63_000  # the PCR runs 0.7 s ahead of the decode times (ffmpeg's default mux delay)
_WRAP = (1 << 33) - 1
_AUDIO_PES_BYTES = 2930  # audio frames per PES up to this size, as ffmpeg does
_START = b"\x00\x00\x00\x01"

_H264 = ("avc1", "avc3")
_HEVC = ("hvc1", "hev1")
_H264_AUD = _START + b"\x09\xf0"
_HEVC_AUD = _START + b"\x46\x01\x50"
_AAC_OBJECT_TYPES_FOR_ADTS = (1, 2, 3, 4)


class _Unit(NamedTuple):
    """One PES: an access unit of video, or a run of audio frames."""

    decode: int  # 90 kHz, for interleaving and the PCR
    order: int  # the stream's place in the PMT, to break ties
    pid: int
    pes: bytes
    random_access: bool  # flag it in the adaptation field
    pcr: bool  # carry a PCR


@dataclass(frozen=True, slots=True)
class _Stream:
    """How one track is carried: PID, PMT entry and how its samples become PES payload."""

    track: Track
    index: int  # in Movie.tracks
    pid: int
    stream_type: int
    stream_id: int
    descriptors: bytes
    adts: bytes  # ADTS header bytes 2-3 base (AAC only)


def ts_reason(movie: Movie) -> str | None:
    """None when MPEG-TS can carry every track of `movie`, otherwise the one-line reason."""
    for track in movie.tracks:
        reason = _reason(track)
        if reason is not None:
            return reason
    return None


def _reason(track: Track) -> str | None:
    codec = track.codec
    if codec in _H264 or codec in _HEVC:
        if not track.config:
            return f"the {codec} track has no decoder configuration"
        return None
    if _is_mp3(track) or codec in ("ac-3", "ec-3"):
        return None
    if _is_aac(track):
        kind, rate_index, _ = _adts_fields(track.config)
        if kind not in _AAC_OBJECT_TYPES_FOR_ADTS:
            return f"AAC object type {kind} cannot be carried in MPEG-TS"
        if rate_index is None:
            return f"AAC at {track.sample_rate} Hz cannot be carried in MPEG-TS"
        return None
    return f"codec {codec} cannot be carried in MPEG-TS"


def _is_aac(track: Track) -> bool:
    return track.codec == "mp4a" and track.codecs.startswith("mp4a.40.") and not _is_mp3(track)


def _is_mp3(track: Track) -> bool:
    return track.codecs == "mp4a.40.34"


def _adts_fields(config: bytes) -> tuple[int, int | None, int]:
    """(core audio object type, sampling frequency index, channel configuration) for ADTS.

    HE-AAC (SBR, PS) is signalled in ADTS as its AAC-LC core at the core sample rate."""
    if len(config) < 2:
        return 2, None, 0
    bits = int.from_bytes(config[:8].ljust(8, b"\0"), "big")
    pos = 64

    def take(count: int) -> int:
        nonlocal pos
        pos -= count
        return bits >> pos & ((1 << count) - 1)

    def object_type() -> int:
        kind = take(5)
        return 32 + take(6) if kind == 31 else kind

    def rate() -> int | None:
        index = take(4)
        if index == 15:
            explicit = take(24)
            return AAC_RATES.index(explicit) if explicit in AAC_RATES else None
        return index if index < len(AAC_RATES) else None

    kind = object_type()
    rate_index = rate()
    channels = take(4)
    if kind in (5, 29):
        rate()  # the extension (SBR) rate
        kind = object_type()
    return kind, rate_index, channels


# -- the segment ---------------------------------------------------------------------------


def mux_ts(movie: Movie, segment: Segment, read: Callable[[int, int], bytes]) -> bytes:
    """`segment` of `movie` as MPEG-TS; `read(offset, length)` gives bytes in segment.ranges."""
    reason = ts_reason(movie)
    if reason is not None:
        raise RemuxError(reason)
    try:
        return _mux(movie, segment, read)
    except RemuxError:
        raise
    except (IndexError, ValueError, OverflowError):
        # Tables that parsed but do not hold together (a damaged file).
        raise RemuxError(f"corrupt MP4: segment {segment.number} cannot be remuxed") from None


def _mux(movie: Movie, segment: Segment, read: Callable[[int, int], bytes]) -> bytes:
    streams = _streams(movie)
    data = SegmentData(segment, read)
    pcr_pid = streams[0].pid
    units: list[_Unit] = []
    for order, stream in enumerate(streams):
        first, end = segment.samples[stream.index]
        if first >= end:
            continue
        views = data.samples(stream.track, first, end)
        if stream.track.kind == "video":
            units.extend(_video_units(stream, first, views, order, stream.pid == pcr_pid))
        else:
            units.extend(_audio_units(stream, first, views, order, stream.pid == pcr_pid))
    units.sort(key=lambda unit: (unit.decode, unit.order))

    out: list[bytes | memoryview] = [
        _psi(0, segment.number, _pat()),
        _psi(_PMT_PID, segment.number, _pmt(streams, pcr_pid)),
    ]
    counts = [
        _packets_needed(len(unit.pes), _af_size(unit.random_access, unit.pcr)) for unit in units
    ]
    _pad_to_sixteen(units, counts)
    continuity: dict[int, int] = {}
    for unit, count in zip(units, counts, strict=True):
        pcr = (unit.decode - _PCR_LEAD) & _WRAP if unit.pcr else None
        cc = continuity.get(unit.pid, 0)
        _packetize(out, unit.pid, cc, unit.pes, count, unit.random_access, pcr)
        continuity[unit.pid] = (cc + count) & 15
    return b"".join(out)


def _pad_to_sixteen(units: list[_Unit], counts: list[int]) -> None:
    """Spread each PID's last PES over more packets until the PID has a multiple of 16."""
    totals: dict[int, int] = {}
    for unit, count in zip(units, counts, strict=True):
        totals[unit.pid] = totals.get(unit.pid, 0) + count
    short = {pid: -total % 16 for pid, total in totals.items()}
    for at in range(len(units) - 1, -1, -1):
        pid = units[at].pid
        if short[pid]:
            # Every packet must carry at least one byte of its PES.
            more = min(short[pid], len(units[at].pes) - counts[at])
            counts[at] += more
            short[pid] -= more


def _streams(movie: Movie) -> list[_Stream]:
    streams = []
    for index, track in enumerate(movie.tracks):
        pid = _FIRST_PID + index
        descriptors = b""
        adts = b""
        if track.codec in _H264:
            stream_type, stream_id = 0x1B, 0xE0
        elif track.codec in _HEVC:
            stream_type, stream_id = 0x24, 0xE0
        elif _is_aac(track):
            stream_type, stream_id = 0x0F, 0xC0
            kind, rate_index, channels = _adts_fields(track.config)
            channels = channels or min(track.channels, 7)
            assert rate_index is not None
            adts = bytes(((kind - 1) << 6 | rate_index << 2 | channels >> 2, (channels & 3) << 6))
        elif _is_mp3(track):
            stream_type, stream_id = (0x03 if track.sample_rate >= 32000 else 0x04), 0xC0
        elif track.codec == "ac-3":
            stream_type, stream_id = 0x81, 0xBD
            descriptors = b"\x05\x04AC-3"  # registration descriptor
        else:  # ec-3
            stream_type, stream_id = 0x87, 0xBD
            descriptors = b"\x05\x04EAC3"
        streams.append(_Stream(track, index, pid, stream_type, stream_id, descriptors, adts))
    return streams


def _time(ticks: int, timescale: int) -> int:
    return (ticks * _CLOCK // timescale + _OFFSET) & _WRAP


def _video_units(
    stream: _Stream, first: int, views: list[memoryview], order: int, pcr: bool
) -> list[_Unit]:
    track = stream.track
    hevc = track.codec in _HEVC
    aud = _HEVC_AUD if hevc else _H264_AUD
    params = _parameter_sets(track)
    length_size = track.nal_length_size
    end = first + len(views)
    dts_table = track.dts.span(first, end)
    cts_table = track.cts.span(first, end) if track.cts else None
    sync = track.sync.span(first, end)
    timescale = track.timescale
    units = []
    for index, view in enumerate(views):
        dts = dts_table[index]
        pts = dts + cts_table[index] if cts_table is not None else dts
        key = sync[index] == 1
        body, has_params = _annex_b(view, length_size, hevc)
        head = aud + params if key and not has_params else aud
        decode, present = _time(dts, timescale), _time(pts, timescale)
        if cts_table is not None and decode != present:
            header = _pes_header(stream.stream_id, len(head) + len(body), present, decode)
        else:
            header = _pes_header(stream.stream_id, len(head) + len(body), present, None)
        units.append(_Unit(decode, order, stream.pid, header + head + body, key, pcr))
    return units


def _parameter_sets(track: Track) -> bytes:
    """SPS and PPS (and VPS) of the decoder configuration, in Annex B form."""
    config = track.config
    nals: list[bytes] = []
    if track.codec in _H264:
        pos = 5
        for mask in (0x1F, 0xFF):  # SPS count has 3 reserved bits, PPS count none
            count = config[pos] & mask
            pos += 1
            for _ in range(count):
                length = int.from_bytes(config[pos : pos + 2], "big")
                nals.append(config[pos + 2 : pos + 2 + length])
                pos += 2 + length
    else:
        arrays = config[22]
        pos = 23
        for _ in range(arrays):
            count = int.from_bytes(config[pos + 1 : pos + 3], "big")
            pos += 3
            for _ in range(count):
                length = int.from_bytes(config[pos : pos + 2], "big")
                nals.append(config[pos + 2 : pos + 2 + length])
                pos += 2 + length
    if pos > len(config):
        raise RemuxError(f"the {track.codec} decoder configuration is truncated")
    return b"".join(_START + nal for nal in nals)


def _annex_b(sample: memoryview, length_size: int, hevc: bool) -> tuple[bytes, bool]:
    """A length-prefixed access unit with start codes instead, less any access unit
    delimiter (one goes in front); and whether it carries its own parameter sets."""
    size = len(sample)
    nals: list[tuple[int, int]] = []  # (start, end) of each NAL unit's payload
    pos = 0
    has_params = False
    drop = False
    while pos < size:
        length = int.from_bytes(sample[pos : pos + length_size], "big")
        start = pos + length_size
        pos = start + length
        if pos > size or length == 0:
            raise RemuxError("corrupt video sample: NAL unit lengths do not add up")
        kind = (sample[start] >> 1) & 0x3F if hevc else sample[start] & 0x1F
        if kind == (35 if hevc else 9):
            drop = True
        elif (32 <= kind <= 34) if hevc else (kind in (7, 8)):
            has_params = True
        nals.append((start, pos))
    if length_size == 4 and not drop:
        # Same size: overwrite each length with a start code.
        out = bytearray(sample)
        for start, _ in nals:
            out[start - 4 : start] = _START
        return bytes(out), has_params
    aud = 35 if hevc else 9
    parts = []
    for start, end in nals:
        kind = (sample[start] >> 1) & 0x3F if hevc else sample[start] & 0x1F
        if kind != aud:
            parts.append(_START)
            parts.append(sample[start:end])
    return b"".join(parts), has_params


def _audio_units(
    stream: _Stream, first: int, views: list[memoryview], order: int, pcr: bool
) -> list[_Unit]:
    track = stream.track
    dts_table, timescale = track.dts.span(first, first + len(views)), track.timescale
    units = []
    group: list[bytes | memoryview] = []
    group_bytes = 0
    group_start = 0
    adts = stream.adts

    def flush() -> None:
        decode = _time(dts_table[group_start], timescale)
        payload = b"".join(group)
        header = _pes_header(stream.stream_id, len(payload), decode, None)
        # Audio-only: every frame is a random access point; say so where the clock is.
        units.append(_Unit(decode, order, stream.pid, header + payload, pcr, pcr))

    for index, view in enumerate(views):
        size = len(view)
        if adts:
            length = size + 7
            if length > 0x1FFF:
                raise RemuxError("an AAC frame is too large for ADTS")
            head = bytes(
                (0xFF, 0xF1, adts[0], adts[1] | length >> 11, length >> 3 & 0xFF,
                 (length & 7) << 5 | 0x1F, 0xFC)
            )  # fmt: skip
            size = length
        if group and group_bytes + size > _AUDIO_PES_BYTES:
            flush()
            group = []
            group_bytes = 0
        if not group:
            group_start = index
        if adts:
            group.append(head)
        group.append(view)
        group_bytes += size
    if group:
        flush()
    return units


def _pes_header(stream_id: int, payload: int, pts: int, dts: int | None) -> bytes:
    if dts is None:
        length = payload + 8
        fields = b"\x80\x05" + _timestamp(0x2, pts)
    else:
        length = payload + 13
        fields = b"\xc0\x0a" + _timestamp(0x3, pts) + _timestamp(0x1, dts)
    # A video PES too long for the 16-bit length says 0: "until the next PES".
    length = length if length <= 0xFFFF else 0
    return bytes((0, 0, 1, stream_id, length >> 8, length & 0xFF, 0x84)) + fields


def _timestamp(prefix: int, value: int) -> bytes:
    return bytes(
        (
            prefix << 4 | (value >> 29) & 0x0E | 1,
            (value >> 22) & 0xFF,
            (value >> 14) & 0xFE | 1,
            (value >> 7) & 0xFF,
            (value << 1) & 0xFE | 1,
        )
    )


# -- packets -------------------------------------------------------------------------------


def _af_size(key: bool, pcr: bool) -> int:
    """Adaptation field bytes the first packet of a PES needs (length and flags, PCR)."""
    return 8 if pcr else 2 if key else 0


def _packets_needed(length: int, adaptation: int) -> int:
    return -(-(length + adaptation) // _BODY)


_CONTINUATION: dict[int, list[bytes]] = {}


def _continuation_headers(pid: int) -> list[bytes]:
    headers = _CONTINUATION.get(pid)
    if headers is None:
        headers = [bytes((0x47, pid >> 8 & 0x1F, pid & 0xFF, 0x10 | cc)) for cc in range(16)]
        _CONTINUATION[pid] = headers
    return headers


def _packetize(
    out: list[bytes | memoryview],
    pid: int,
    continuity: int,
    pes: bytes,
    count: int,
    key: bool,
    pcr: int | None,
) -> None:
    """`pes` over exactly `count` packets, each carrying at least one byte of it.

    Stuffing (the packets beyond the minimum, and the remainder) goes in the adaptation
    fields of the first packets, so the rest are whole 184-byte slices."""
    view = memoryview(pes)
    length = len(pes)
    flags = (0x40 if key else 0) | (0x10 if pcr is not None else 0)
    base = _af_size(key, pcr is not None)
    stuffing = _BODY * count - base - length
    pos = 0
    index = 0
    while index < count and (stuffing or index == 0):
        own = base if index == 0 else 0
        extra = min(stuffing, 183 - own)
        stuffing -= extra
        field_size = own + extra
        payload = _BODY - field_size
        header = bytes(
            (
                0x47,
                (0x40 if index == 0 else 0) | pid >> 8 & 0x1F,
                pid & 0xFF,
                (0x30 if field_size else 0x10) | (continuity + index) & 15,
            )
        )
        out.append(header)
        if field_size == 1:
            out.append(b"\x00")
        elif field_size:
            field = bytearray((field_size - 1, flags if index == 0 else 0))
            if index == 0 and pcr is not None:
                field += _pcr(pcr)
            field += b"\xff" * (field_size - len(field))
            out.append(bytes(field))
        out.append(view[pos : pos + payload])
        pos += payload
        index += 1
    rest = count - index
    if rest:
        headers = islice(cycle(_continuation_headers(pid)), (continuity + index) & 15, None)
        cuts = map(slice, range(pos, length, _BODY), range(pos + _BODY, length + _BODY, _BODY))
        bodies = map(view.__getitem__, cuts)
        out.extend(chain.from_iterable(zip(headers, bodies, strict=False)))


def _pcr(value: int) -> bytes:
    """A PCR with a 90 kHz base and no 27 MHz extension."""
    return bytes(
        (value >> 25 & 0xFF, value >> 17 & 0xFF, value >> 9 & 0xFF, value >> 1 & 0xFF,
         (value & 1) << 7 | 0x7E, 0)
    )  # fmt: skip


# -- program tables --------------------------------------------------------------------------


def _pat() -> bytes:
    return _section(0x00, 1, (1).to_bytes(2, "big") + (0xE000 | _PMT_PID).to_bytes(2, "big"))


def _pmt(streams: list[_Stream], pcr_pid: int) -> bytes:
    body = bytearray((0xE0 | pcr_pid >> 8, pcr_pid & 0xFF, 0xF0, 0x00))
    for stream in streams:
        body += bytes((stream.stream_type, 0xE0 | stream.pid >> 8, stream.pid & 0xFF))
        body += (0xF000 | len(stream.descriptors)).to_bytes(2, "big") + stream.descriptors
    return _section(0x02, 1, bytes(body))


def _section(table_id: int, table_extension: int, body: bytes) -> bytes:
    length = 5 + len(body) + 4
    section = (
        bytes((table_id, 0xB0 | length >> 8, length & 0xFF))
        + table_extension.to_bytes(2, "big")
        + b"\xc1\x00\x00"
        + body
    )
    return section + _crc32(section).to_bytes(4, "big")


def _psi(pid: int, number: int, section: bytes) -> bytes:
    # One table per segment: its continuity counter is the segment number.
    header = bytes((0x47, 0x40 | pid >> 8, pid & 0xFF, 0x10 | number & 15, 0x00))
    packet = header + section
    return packet + b"\xff" * (PACKET - len(packet))


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = (crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def _crc32(data: bytes) -> int:
    """CRC-32/MPEG-2 (not zlib's reflected CRC-32)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = (crc << 8 & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc
