"""MPEG-TS segments, judged by ffprobe and ffmpeg: alone, concatenated, and as HLS."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from gateway.remux.errors import RemuxError
from gateway.remux.movie import Movie
from gateway.remux.plan import Segment, plan_segments
from gateway.remux.ts import mux_ts, ts_reason
from tests.remux.conftest import (
    decode_errors,
    ffprobe,
    frame_counts,
    load,
    reader,
    source_frames,
    write_playlist,
)

CLOCK = 90_000
OFFSET = 10 * CLOCK  # the muxers' timeline starts 10 s in
MUXED = ["faststart.mp4", "bframes.mp4", "moov_last.mp4", "video_only.mp4", "audio_only.m4a",
         "hevc.mp4", "ac3.mp4", "mp3.mp4"]  # fmt: skip
CODEC_NAMES = {"avc1": "h264", "hvc1": "hevc", "ac-3": "ac3"}


@dataclass
class Muxed:
    source: Path
    movie: Movie
    plan: list[Segment]
    files: list[Path]
    joined: Path  # every segment, concatenated
    playlist: Path

    def codec_names(self) -> list[str]:
        names = []
        for track in self.movie.tracks:
            if track.codecs == "mp4a.40.34":
                names.append("mp3")
            else:
                names.append(CODEC_NAMES.get(track.codec, "aac"))
        return names


@pytest.fixture(scope="module")
def muxed(sources, tmp_path_factory):
    made: dict[str, Muxed] = {}

    def make(name: str) -> Muxed:
        if name not in made:
            data, movie = load(sources.path(name))
            plan = plan_segments(movie, 4.0)
            directory = tmp_path_factory.mktemp("ts-" + name.replace(".", "-"))
            files = []
            for segment in plan:
                path = directory / f"seg-{segment.number}.ts"
                path.write_bytes(mux_ts(movie, segment, reader(data, segment)))
                files.append(path)
            joined = directory / "joined.ts"
            joined.write_bytes(b"".join(path.read_bytes() for path in files))
            playlist = write_playlist(directory, plan, [path.name for path in files])
            made[name] = Muxed(sources.path(name), movie, plan, files, joined, playlist)
        return made[name]

    return make


# -- players' view ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MUXED)
def test_every_segment_is_an_mpegts_file_with_every_stream(muxed, name):
    out = muxed(name)
    for path, segment in zip(out.files, out.plan, strict=True):
        probe = ffprobe(path, "-show_streams", "-show_format")
        assert probe["format"]["format_name"] == "mpegts"
        assert [s["codec_name"] for s in probe["streams"]] == out.codec_names()
        # On the source's timeline (plus the fixed offset), not restarted at 0.
        start = float(probe["format"]["start_time"])
        assert start == pytest.approx(OFFSET / CLOCK + segment.start, abs=0.03)


@pytest.mark.parametrize("name", MUXED)
def test_the_joined_segments_decode_cleanly_to_every_frame(muxed, name):
    out = muxed(name)
    assert decode_errors(out.joined) == ""
    assert frame_counts(out.joined) == source_frames(out.source)


@pytest.mark.parametrize("name", ["faststart.mp4", "bframes.mp4", "audio_only.m4a", "hevc.mp4"])
def test_the_segments_play_as_an_hls_playlist(muxed, name):
    out = muxed(name)
    assert decode_errors(out.playlist) == ""
    assert frame_counts(out.playlist) == source_frames(out.source)


@pytest.mark.parametrize("name", ["bframes.mp4", "hevc.mp4"])
def test_a_segment_decodes_on_its_own(muxed, name):
    """A player may start anywhere: parameter sets and a keyframe open every segment.

    x265 makes open GOPs: pictures that follow a keyframe in decode order but are shown
    before it refer to the previous GOP, and a decoder starting here skips them."""
    out = muxed(name)
    middle = len(out.files) // 2
    segment = out.plan[middle]
    assert decode_errors(out.files[middle]) == ""
    video = out.movie.video
    assert video is not None
    first, end = segment.samples[0]
    leading = sum(
        1 for i in range(first, end)
        if video.dts[i] + video.cts[i] < segment.start * video.timescale
    )  # fmt: skip
    assert frame_counts(out.files[middle])["video"] == end - first - leading
    if name == "bframes.mp4":
        assert leading == 0  # x264: closed GOPs


@pytest.mark.parametrize("name", ["bframes.mp4", "faststart.mp4", "ac3.mp4"])
def test_timestamps_run_on_across_segment_boundaries(muxed, name):
    out = muxed(name)
    packets = ffprobe(out.joined, "-show_entries", "packet=stream_index,pts,duration",
                      "-show_packets")["packets"]  # fmt: skip
    firsts = {}
    for index, track in enumerate(out.movie.tracks):
        times = [p["pts"] for p in packets if p["stream_index"] == index]
        firsts[track.kind] = min(times)
        if track.kind == "video":
            times.sort()  # presentation order
        step = round((track.dts[2] - track.dts[1]) * CLOCK / track.timescale)
        # No gap, no overlap: one frame after another, to the tick.
        assert {b - a for a, b in pairwise(times)} <= {step - 1, step, step + 1}
        assert len(times) == track.sample_count
    if len(firsts) == 2:
        audio = out.movie.audio[0]
        frame = (audio.dts[2] - audio.dts[1]) * CLOCK / audio.timescale
        assert abs(firsts["video"] - firsts["audio"]) <= frame + 1


# -- the stream itself ---------------------------------------------------------------------------


def packets_of(data: bytes) -> list[tuple[int, bool, int, bytes, bytes]]:
    """(PID, payload unit start, continuity counter, adaptation field, payload) per packet."""
    assert len(data) % 188 == 0
    out = []
    for at in range(0, len(data), 188):
        packet = data[at : at + 188]
        assert packet[0] == 0x47
        pid = (packet[1] & 0x1F) << 8 | packet[2]
        control = packet[3] >> 4 & 3
        field, payload = b"", packet[4:]
        if control & 2:
            field, payload = packet[5 : 5 + packet[4]], packet[5 + packet[4] :]
        out.append(
            (pid, bool(packet[1] & 0x40), packet[3] & 15, field, payload if control & 1 else b"")
        )
    return out


def pes_of(packets, pid: int) -> list[bytes]:
    units: list[bytearray] = []
    for packet_pid, start, _, _, payload in packets:
        if packet_pid == pid:
            if start:
                units.append(bytearray())
            units[-1] += payload
    return [bytes(unit) for unit in units]


@pytest.mark.parametrize("name", ["bframes.mp4", "audio_only.m4a", "hevc.mp4"])
def test_continuity_counters_run_on_across_segments(muxed, name):
    out = muxed(name)
    last: dict[int, int] = {}
    for pid, _, counter, _, payload in packets_of(out.joined.read_bytes()):
        if payload:
            if pid in last:
                assert counter == (last[pid] + 1) & 15, f"PID {pid:#x}"
            last[pid] = counter
    assert len(last) == 2 + len(out.movie.tracks)


def test_each_segment_opens_with_pat_and_pmt_and_clocks_on_video(muxed):
    out = muxed("bframes.mp4")
    clocks = []
    for path in out.files:
        packets = packets_of(path.read_bytes())
        assert [packets[0][0], packets[1][0]] == [0, 0x1000]
        for pid, _, _, field, _ in packets:
            if field and field[0] & 0x10:
                assert pid == 0x100  # the video PID
                clocks.append(int.from_bytes(field[1:7], "big") >> 15)
    assert clocks == sorted(clocks) and len(clocks) >= 750


def test_video_access_units_carry_a_delimiter_and_keyframes_their_parameter_sets(muxed):
    out = muxed("bframes.mp4")
    video = out.movie.video
    assert video is not None
    units = [unit for path in out.files for unit in pes_of(packets_of(path.read_bytes()), 0x100)]
    assert len(units) == video.sample_count
    for index, unit in enumerate(units):
        payload = unit[9 + unit[8] :]
        assert payload.startswith(b"\x00\x00\x00\x01\x09")
        nal_types = [payload[i + 4] & 0x1F for i in range(len(payload) - 4)
                     if payload[i : i + 4] == b"\x00\x00\x00\x01"]  # fmt: skip
        if video.sync[index]:
            assert nal_types[:4] == [9, 7, 8, 5] or nal_types[:5] == [9, 7, 8, 6, 5]
        else:
            assert 7 not in nal_types and 5 not in nal_types


def test_audio_is_adts(muxed):
    out = muxed("audio_only.m4a")
    units = pes_of(packets_of(out.files[0].read_bytes()), 0x100)
    frames = 0
    for unit in units:
        payload = unit[9 + unit[8] :]
        while payload:
            assert payload[0] == 0xFF and payload[1] & 0xF6 == 0xF0  # ADTS sync, no CRC
            length = (payload[3] & 3) << 11 | payload[4] << 3 | payload[5] >> 5
            payload = payload[length:]
            frames += 1
    first, end = out.plan[0].samples[0]
    assert frames == end - first


def test_segments_are_the_same_bytes_every_time(sources, muxed):
    out = muxed("bframes.mp4")
    data, movie = load(sources.path("bframes.mp4"))
    segment = out.plan[3]
    assert mux_ts(movie, segment, reader(data, segment)) == out.files[3].read_bytes()


# -- what TS cannot carry ------------------------------------------------------------------------


def test_codecs_mpegts_can_carry_have_no_reason(sources):
    for name in MUXED:
        assert ts_reason(load(sources.path(name))[1]) is None


def test_vp9_and_opus_cannot_be_mpegts(sources):
    data, movie = load(sources.path("vp9_opus.mp4"))
    assert ts_reason(movie) == "codec vp09 cannot be carried in MPEG-TS"
    segment = plan_segments(movie)[0]
    with pytest.raises(RemuxError, match=r"^codec vp09 cannot be carried in MPEG-TS$"):
        mux_ts(movie, segment, reader(data, segment))


def test_a_read_shorter_than_asked_is_a_remux_error(sources):
    data, movie = load(sources.path("faststart.mp4"))
    segment = plan_segments(movie)[1]
    with pytest.raises(RemuxError, match="outside the bytes read"):
        mux_ts(movie, segment, lambda offset, length: data[offset : offset + length - 1])


def audio_specific_config(*fields: tuple[int, int]) -> bytes:
    """Bits packed MSB first from (value, width) pairs, padded to whole bytes."""
    value, width = 0, 0
    for field, bits in fields:
        value, width = value << bits | field, width + bits
    pad = -width % 8
    return (value << pad).to_bytes((width + pad) // 8, "big")


def test_he_aac_goes_into_adts_as_its_aac_lc_core(sources):
    """ADTS has no HE-AAC profile: decoders find the SBR layer themselves in the LC stream."""
    data, movie = load(sources.path("audio_only.m4a"))
    # HE-AAC (object type 5) at 24 kHz core / 48 kHz output, stereo, core AAC-LC (2).
    config = audio_specific_config((5, 5), (6, 4), (2, 4), (3, 4), (2, 5))
    he_aac = Movie(movie.duration, [dataclasses.replace(movie.audio[0], config=config)])
    assert ts_reason(he_aac) is None
    segment = plan_segments(he_aac)[0]
    unit = pes_of(packets_of(mux_ts(he_aac, segment, reader(data, segment))), 0x100)[0]
    adts = unit[9 + unit[8] :][:7]
    assert adts[2] >> 6 == 1  # profile: object type 2 (LC) - 1
    assert adts[2] >> 2 & 15 == 6  # 24 kHz
    assert (adts[2] & 1) << 2 | adts[3] >> 6 == 2  # stereo


def test_aac_object_types_adts_cannot_say_have_a_reason(sources):
    _, movie = load(sources.path("audio_only.m4a"))
    low_delay = audio_specific_config((23, 5), (3, 4), (2, 4))  # AAC-LD
    changed = Movie(movie.duration, [dataclasses.replace(movie.audio[0], config=low_delay)])
    assert ts_reason(changed) == "AAC object type 23 cannot be carried in MPEG-TS"
