"""A static DASH MPD served as HLS: the origin's own segments, listed in HLS playlists."""

import itertools
import math
import re

import m3u8
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playlists import dash_hls
from playlists.dash_hls import (
    DashToHlsError,
    master_playlist,
    media_playlist,
    read_mpd,
    sidx_byte_range,
)
from playlists.errors import PlaylistError
from playlists.sidx import SidxError, parse_sidx
from tests.support.corpus import DASH_CORPUS as CORPUS

MPD_URL = "https://origin.example/vod/title/manifest.mpd?token=abc"


def mpd(inner: str, attrs: str = ' type="static" mediaPresentationDuration="PT10S"') -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"{attrs}>\n{inner}\n</MPD>\n'
    ).encode()


def media_uri(rendition) -> str:
    return rendition.name + ".m3u8"


def same(url: str) -> str:
    return url


def parsed_media(presentation, name: str, sidx: bytes | None = None) -> m3u8.M3U8:
    return m3u8.loads(media_playlist(presentation, name, same, sidx))


def uris(playlist: m3u8.M3U8) -> list[str]:
    return [segment.uri for segment in playlist.segments]


def durations(playlist: m3u8.M3U8) -> list[float]:
    return [segment.duration for segment in playlist.segments]


def make_sidx(
    references: list[tuple[int, int]],
    *,
    timescale: int = 1000,
    first_offset: int = 0,
    version: int = 0,
    nested: bool = False,
) -> bytes:
    """A sidx box listing (size, duration in ticks) subsegments."""
    wide = 4 if version == 0 else 8
    body = bytes([version, 0, 0, 0]) + (1).to_bytes(4, "big") + timescale.to_bytes(4, "big")
    body += (0).to_bytes(wide, "big") + first_offset.to_bytes(wide, "big")
    body += (0).to_bytes(2, "big") + len(references).to_bytes(2, "big")
    for size, ticks in references:
        body += ((1 << 31 if nested else 0) | size).to_bytes(4, "big")
        body += ticks.to_bytes(4, "big") + (1 << 31).to_bytes(4, "big")
    return (8 + len(body)).to_bytes(4, "big") + b"sidx" + body


VIDEO_AUDIO = """
<Period>
  <AdaptationSet contentType="video" mimeType="video/mp4" frameRate="30000/1001">
    <SegmentTemplate timescale="1000" duration="4000" startNumber="1"
        initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number%05d$.m4s"/>
    <Representation id="v720" bandwidth="3000000" codecs="avc1.64001f" width="1280" height="720"/>
    <Representation id="v360" bandwidth="800000" codecs="avc1.4d401e" width="640" height="360"/>
  </AdaptationSet>
  <AdaptationSet contentType="audio" mimeType="audio/mp4" lang="en">
    <Role schemeIdUri="urn:mpeg:dash:role:2011" value="main"/>
    <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
    <SegmentTemplate timescale="48000" duration="192000"
        initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
    <Representation id="aac-128" bandwidth="128000" codecs="mp4a.40.2"/>
    <Representation id="aac-64" bandwidth="64000" codecs="mp4a.40.2"/>
  </AdaptationSet>
  <AdaptationSet contentType="audio" mimeType="audio/mp4" lang="de">
    <Label>Deutsch (5.1)</Label>
    <AudioChannelConfiguration schemeIdUri="tag:dolby.com,2014:dash:audio_channel_configuration:2011" value="F801"/>
    <SegmentTemplate timescale="48000" duration="192000"
        initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s"/>
    <Representation id="ec3" bandwidth="384000" codecs="ec-3"/>
  </AdaptationSet>
  <AdaptationSet contentType="text" mimeType="text/vtt" lang="en">
    <Representation id="subs" bandwidth="100"><BaseURL>subs.vtt</BaseURL></Representation>
  </AdaptationSet>
</Period>
"""


# -- master playlist ----------------------------------------------------------------------------


def test_every_video_representation_is_a_variant_with_the_audio_group_counted_in():
    master = master_playlist(read_mpd(mpd(VIDEO_AUDIO), MPD_URL), media_uri)
    assert master.startswith("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
    playlist = m3u8.loads(master)
    assert playlist.is_variant
    variants = {p.uri: p.stream_info for p in playlist.playlists}
    assert set(variants) == {"v-v720.m3u8", "v-v360.m3u8"}
    high = variants["v-v720.m3u8"]
    assert high.bandwidth == 3000000 + 384000  # the costliest audio rendition of the group
    assert high.codecs == "avc1.64001f,mp4a.40.2,ec-3"
    assert high.resolution == (1280, 720)
    assert high.frame_rate == pytest.approx(29.97)
    assert high.audio == "audio"
    assert "AVERAGE-BANDWIDTH" not in master  # an MPD states no average


def test_each_audio_adaptation_set_is_one_rendition_of_its_best_representation():
    playlist = m3u8.loads(master_playlist(read_mpd(mpd(VIDEO_AUDIO), MPD_URL), media_uri))
    media = {m.uri: m for m in playlist.media}
    assert set(media) == {"a-aac-128.m3u8", "a-ec3.m3u8"}
    english, german = media["a-aac-128.m3u8"], media["a-ec3.m3u8"]
    assert (english.type, english.group_id, english.language, english.name) == (
        "AUDIO",
        "audio",
        "en",
        "en",
    )
    assert (english.default, english.autoselect, english.channels) == ("YES", "YES", "2")
    assert (german.name, german.language, german.default, german.channels) == (
        "Deutsch (5.1)",
        "de",
        "NO",
        "6",
    )


def test_subtitles_are_left_out():
    presentation = read_mpd(mpd(VIDEO_AUDIO), MPD_URL)
    assert {r.kind for r in presentation.renditions} == {"video", "audio"}
    assert "vtt" not in master_playlist(presentation, media_uri)


def test_an_audio_only_mpd_offers_its_audio_as_variants():
    body = mpd(
        '<Period><AdaptationSet mimeType="audio/mp4" lang="en">'
        '<SegmentTemplate timescale="1" duration="2" initialization="i-$RepresentationID$.mp4" media="$RepresentationID$-$Number$.m4s"/>'
        '<Representation id="hi" bandwidth="128000" codecs="mp4a.40.2"/>'
        '<Representation id="lo" bandwidth="48000" codecs="mp4a.40.5"/>'
        "</AdaptationSet></Period>"
    )
    playlist = m3u8.loads(master_playlist(read_mpd(body, MPD_URL), media_uri))
    assert not playlist.media
    assert [(p.uri, p.stream_info.bandwidth, p.stream_info.codecs) for p in playlist.playlists] == [
        ("a-hi.m3u8", 128000, "mp4a.40.2"),
        ("a-lo.m3u8", 48000, "mp4a.40.5"),
    ]


def test_rendition_names_are_url_safe_unique_and_stable():
    body = mpd(
        '<Period><AdaptationSet mimeType="video/mp4">'
        '<SegmentTemplate duration="2" initialization="init.mp4" media="$Number$.m4s"/>'
        '<Representation id="video/avc1 1080" bandwidth="2"/>'
        '<Representation id="video_avc1_1080" bandwidth="1"/>'
        "</AdaptationSet></Period>"
    )
    names = [r.name for r in read_mpd(body, MPD_URL).renditions]
    assert names == ["v-video_avc1_1080", "v-video_avc1_1080-2"]
    assert names == [r.name for r in read_mpd(body, MPD_URL).renditions]


def test_layered_representations_are_left_out():
    body = mpd(
        '<Period><AdaptationSet mimeType="video/mp4" codecs="avc1.64001f">'
        '<SegmentTemplate duration="2" initialization="$RepresentationID$.mp4" media="$RepresentationID$-$Number$.m4s"/>'
        '<Representation id="base" bandwidth="1000"/>'
        '<Representation id="enhancement" dependencyId="base" bandwidth="2000"/>'
        "</AdaptationSet></Period>"
    )
    assert [r.name for r in read_mpd(body, MPD_URL).renditions] == ["v-base"]


# -- SegmentTemplate ------------------------------------------------------------------------


def test_number_template_counts_segments_from_the_duration_and_clips_the_last():
    presentation = read_mpd(mpd(VIDEO_AUDIO), MPD_URL)
    text = media_playlist(presentation, "v-v360", same)
    playlist = m3u8.loads(text)
    assert playlist.playlist_type == "vod" and playlist.is_endlist
    assert playlist.target_duration == 4
    assert playlist.segment_map[0].uri == "https://origin.example/vod/title/v360/init.mp4"
    assert uris(playlist) == [
        "https://origin.example/vod/title/v360/00001.m4s",
        "https://origin.example/vod/title/v360/00002.m4s",
        "https://origin.example/vod/title/v360/00003.m4s",
    ]
    assert durations(playlist) == [4.0, 4.0, 2.0]
    assert "#EXTINF:2.000," in text


def test_template_identifiers_are_all_expanded():
    body = mpd(
        '<Period><AdaptationSet mimeType="video/mp4">'
        '<SegmentTemplate duration="5" startNumber="7" initialization="i_$RepresentationID$_$Bandwidth$.mp4"'
        ' media="$RepresentationID$/b$Bandwidth%08d$/n$Number%03d$-$$-$Number%x$.m4s"/>'
        '<Representation id="r1" bandwidth="500000"/>'
        "</AdaptationSet></Period>"
    )
    presentation = read_mpd(body, MPD_URL)
    playlist = parsed_media(presentation, "v-r1")
    assert playlist.segment_map[0].uri.endswith("/i_r1_500000.mp4")
    assert uris(playlist)[-1] == "https://origin.example/vod/title/r1/b00500000/n008-$-8.m4s"


def test_timeline_with_time_and_repeats_including_minus_one_to_the_period_end():
    body = mpd(
        '<Period duration="PT10S"><AdaptationSet mimeType="audio/mp4">'
        '<SegmentTemplate timescale="48000" presentationTimeOffset="48000" initialization="init.mp4" media="t$Time$.m4s">'
        '<SegmentTimeline><S t="48000" d="95232" r="1"/><S d="96768"/><S d="96000" r="-1"/></SegmentTimeline>'
        "</SegmentTemplate>"
        '<Representation id="a" bandwidth="1"/></AdaptationSet></Period>'
    )
    playlist = parsed_media(read_mpd(body, MPD_URL), "a-a")
    starts = [int(re.search(r"t(\d+)", u).group(1)) for u in uris(playlist)]
    assert starts[:4] == [48000, 143232, 238464, 335232]
    assert starts[-1] == 335232 + 96000 * 2
    # Three segments of about 2 s, then r=-1 fills the Period to its 10 s end: 2 s, 2 s and
    # a last one clipped to the 0.016 s left.
    assert sum(durations(playlist)) == pytest.approx(10.0)
    assert "#EXTINF:1.984," in media_playlist(read_mpd(body, MPD_URL), "a-a", same)


def test_a_minus_one_repeat_stops_at_the_next_entry():
    body = mpd(
        '<Period><AdaptationSet mimeType="video/mp4">'
        '<SegmentTemplate initialization="init.mp4" media="$Number$.m4s" startNumber="0">'
        '<SegmentTimeline><S t="0" d="2" r="-1"/><S t="6" d="4"/></SegmentTimeline>'
        "</SegmentTemplate>"
        '<Representation id="v" bandwidth="1"/></AdaptationSet></Period>'
    )
    playlist = parsed_media(read_mpd(body, MPD_URL), "v-v")
    assert durations(playlist) == [2, 2, 2, 4]
    assert [u.rsplit("/", 1)[1] for u in uris(playlist)] == ["0.m4s", "1.m4s", "2.m4s", "3.m4s"]


def test_target_duration_is_the_ceiling_and_extinf_is_timescale_accurate():
    body = mpd(
        '<Period><AdaptationSet mimeType="video/mp4">'
        '<SegmentTemplate timescale="90000" initialization="init.mp4" media="$Number$.m4s">'
        '<SegmentTimeline><S t="0" d="180181"/><S d="180180" r="2"/></SegmentTimeline>'
        "</SegmentTemplate>"
        '<Representation id="v" bandwidth="1"/></AdaptationSet></Period>'
    )
    text = media_playlist(read_mpd(body, MPD_URL), "v-v", same)
    assert "#EXT-X-TARGETDURATION:3\n" in text
    assert "#EXTINF:2.002011," in text and "#EXTINF:2.002," in text


# -- SegmentList and SegmentBase ----------------------------------------------------------------


def test_segment_list_urls_and_media_ranges_become_byte_ranges():
    body = mpd(
        '<Period><AdaptationSet mimeType="video/mp4"><Representation id="v" bandwidth="1">'
        "<BaseURL>media/film.mp4</BaseURL>"
        '<SegmentList timescale="1000" duration="4000">'
        '<Initialization range="0-899"/>'
        '<SegmentURL mediaRange="900-1999"/><SegmentURL mediaRange="2000-2499"/>'
        '<SegmentURL media="tail.mp4"/>'
        "</SegmentList></Representation></AdaptationSet></Period>"
    )
    playlist = parsed_media(read_mpd(body, MPD_URL), "v-v")
    film = "https://origin.example/vod/title/media/film.mp4"
    assert (playlist.segment_map[0].uri, playlist.segment_map[0].byterange) == (film, "900@0")
    assert [(s.uri, s.byterange) for s in playlist.segments] == [
        (film, "1100@900"),
        (film, "500@2000"),
        ("https://origin.example/vod/title/media/tail.mp4", None),
    ]
    assert durations(playlist) == [4.0, 4.0, 2.0]


ON_DEMAND = """
<Period><AdaptationSet mimeType="video/mp4" codecs="avc1.64001f">
  <Representation id="v" bandwidth="1000"><BaseURL>film.mp4</BaseURL>
    <SegmentBase indexRange="1000-1199"><Initialization range="0-999"/></SegmentBase>
  </Representation>
</AdaptationSet></Period>
"""


def test_segment_base_names_the_index_range_and_lists_the_sidx_subsegments():
    presentation = read_mpd(
        mpd(ON_DEMAND, ' type="static" mediaPresentationDuration="PT9S"'), MPD_URL
    )
    film = "https://origin.example/vod/title/film.mp4"
    assert sidx_byte_range(presentation, "v-v") == (film, 1000, 1199)
    sidx = make_sidx([(5000, 4000), (6000, 4000), (700, 1000)], first_offset=100)
    playlist = parsed_media(presentation, "v-v", sidx)
    assert (playlist.segment_map[0].uri, playlist.segment_map[0].byterange) == (film, "1000@0")
    after_sidx = 1000 + len(sidx) + 100
    assert [s.byterange for s in playlist.segments] == [
        f"5000@{after_sidx}",
        f"6000@{after_sidx + 5000}",
        f"700@{after_sidx + 11000}",
    ]
    assert durations(playlist) == [4.0, 4.0, 1.0]


def test_segment_base_without_its_sidx_is_refused_and_other_addressing_needs_none():
    presentation = read_mpd(mpd(ON_DEMAND), MPD_URL)
    with pytest.raises(DashToHlsError, match="SegmentBase needs its sidx"):
        media_playlist(presentation, "v-v", same)
    with pytest.raises(DashToHlsError, match="sidx"):
        media_playlist(presentation, "v-v", same, b"\x00\x00\x00\x10moov" + bytes(8))
    assert sidx_byte_range(read_mpd(mpd(VIDEO_AUDIO), MPD_URL), "v-v720") is None


def test_an_unknown_rendition_is_a_key_error():
    presentation = read_mpd(mpd(VIDEO_AUDIO), MPD_URL)
    with pytest.raises(KeyError):
        media_playlist(presentation, "v-nope", same)
    with pytest.raises(KeyError):
        sidx_byte_range(presentation, "index")


# -- URLs and Periods ---------------------------------------------------------------------------


def test_base_urls_resolve_level_by_level_from_the_mpds_final_url():
    body = mpd(
        "<BaseURL>../media/</BaseURL><BaseURL>https://mirror.example/unused/</BaseURL>"
        "<Period><BaseURL>p1/</BaseURL>"
        '<AdaptationSet mimeType="video/mp4"><BaseURL>video/</BaseURL>'
        '<SegmentTemplate duration="10" initialization="init.mp4" media="$Number$.m4s?x=1"/>'
        '<Representation id="a" bandwidth="1"><BaseURL>hd/</BaseURL></Representation>'
        '<Representation id="b" bandwidth="1"><BaseURL>https://cdn.example/b/</BaseURL></Representation>'
        "</AdaptationSet></Period>"
    )
    presentation = read_mpd(body, MPD_URL)
    assert uris(parsed_media(presentation, "v-a")) == [
        "https://origin.example/vod/media/p1/video/hd/1.m4s?x=1"
    ]
    assert parsed_media(presentation, "v-b").segment_map[0].uri == "https://cdn.example/b/init.mp4"


def test_periods_play_in_order_with_a_discontinuity_and_the_same_representation():
    period = (
        '<Period id="{id}" duration="PT4S"><AdaptationSet id="{set}" mimeType="video/mp4">'
        '<SegmentTemplate duration="2" initialization="{id}/$RepresentationID$/i.mp4" media="{id}/$RepresentationID$/$Number$.m4s"/>'
        '<Representation id="{low}" bandwidth="100"/><Representation id="{high}" bandwidth="900"/>'
        "</AdaptationSet></Period>"
    )
    body = mpd(
        period.format(id="ad", set="1", low="lo", high="hi")
        # ids differ in the second Period: matched by position and bandwidth rank
        + period.format(id="main", set="7", low="360", high="1080"),
        ' type="static"',
    )
    presentation = read_mpd(body, MPD_URL)
    assert presentation.duration == 8.0
    text = media_playlist(presentation, "v-hi", same)
    playlist = m3u8.loads(text)
    assert [s.uri.split("title/")[1] for s in playlist.segments] == [
        "ad/hi/1.m4s",
        "ad/hi/2.m4s",
        "main/1080/1.m4s",
        "main/1080/2.m4s",
    ]
    assert [s.discontinuity for s in playlist.segments] == [False, False, True, False]
    assert text.count("#EXT-X-MAP:") == 2
    assert "main/1080/i.mp4" in text


def test_a_later_period_that_cannot_continue_a_rendition_is_refused():
    clear = (
        '<Period duration="PT4S"><AdaptationSet mimeType="video/mp4">'
        '<SegmentTemplate duration="2" initialization="i.mp4" media="$Number$.m4s"/>'
        '<Representation id="v" bandwidth="1"/></AdaptationSet></Period>'
    )
    encrypted = clear.replace(
        '<AdaptationSet mimeType="video/mp4">',
        '<AdaptationSet mimeType="video/mp4"><ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cenc"/>',
    )
    with pytest.raises(DashToHlsError, match="encrypted"):
        read_mpd(mpd(clear + encrypted), MPD_URL)
    audio_only = clear.replace("video/mp4", "audio/mp4")
    with pytest.raises(DashToHlsError, match="Period 2 has no video"):
        read_mpd(mpd(clear + audio_only), MPD_URL)


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (mpd(VIDEO_AUDIO, ' type="dynamic"'), "dynamic MPDs cannot be served as HLS"),
        (b'<!DOCTYPE MPD [<!ENTITY x "y">]><MPD xmlns="urn:mpeg:dash:schema:mpd:2011"/>', "DTD"),
        (b"<MPD", "not well-formed"),
        (
            mpd(VIDEO_AUDIO.replace('mimeType="video/mp4"', 'mimeType="video/webm"')),
            "not fMP4/CMAF",
        ),
        (
            mpd(
                VIDEO_AUDIO.replace(
                    "<SegmentTemplate", '<ContentProtection value="cenc"/><SegmentTemplate', 1
                )
            ),
            "encrypted",
        ),
        (mpd('<Period><AdaptationSet mimeType="text/vtt"/></Period>'), "no Period with media"),
        (mpd(VIDEO_AUDIO.replace("$Number%05d$", "$SubNumber$")), "$SubNumber$"),
        (
            mpd(
                VIDEO_AUDIO.replace(
                    'initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number%05d$.m4s"',
                    'media="$Number$.m4s"',
                )
            ),
            "without an initialization",
        ),
        (mpd(VIDEO_AUDIO, ' type="static"'), "no duration to count"),
        (mpd(VIDEO_AUDIO, ' type="static" mediaPresentationDuration="P400D"'), "more than"),
        (mpd(VIDEO_AUDIO.replace("<Period>", "<Period><BaseURL>ftp://x/</BaseURL>")), "not http"),
        (mpd(ON_DEMAND.replace('indexRange="1000-1199"', 'indexRange="9-1"')), "byte range"),
        (mpd(ON_DEMAND + ON_DEMAND), "SegmentBase across several Periods"),
    ],
    ids=lambda value: value if isinstance(value, str) else "mpd",
)
def test_what_hls_cannot_carry_is_refused_with_a_one_line_reason(body, reason):
    with pytest.raises(DashToHlsError) as raised:
        read_mpd(body, MPD_URL)
    assert reason in str(raised.value) and "\n" not in str(raised.value)


def test_a_webm_audio_set_is_left_out_while_an_mp4_one_remains():
    body = VIDEO_AUDIO.replace(
        '<AdaptationSet contentType="audio" mimeType="audio/mp4" lang="de">',
        '<AdaptationSet contentType="audio" mimeType="audio/webm" lang="de">',
    )
    names = [r.name for r in read_mpd(mpd(body), MPD_URL).renditions]
    assert names == ["v-v720", "v-v360", "a-aac-128", "a-aac-64"]


def test_the_size_limit_is_enforced():
    with pytest.raises(DashToHlsError, match="larger than"):
        read_mpd(mpd(VIDEO_AUDIO), MPD_URL, max_bytes=100)


# -- the sidx box -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1])
def test_sidx_references_follow_the_box_and_its_first_offset(version):
    sidx = make_sidx([(100, 48000), (50, 24000)], timescale=48000, first_offset=7, version=version)
    assert parse_sidx(sidx, 500) == [
        (500 + len(sidx) + 7, 100, 1.0),
        (500 + len(sidx) + 107, 50, 0.5),
    ]


def test_boxes_before_the_sidx_are_skipped():
    ftyp = (16).to_bytes(4, "big") + b"ftypisom" + bytes(4)
    moov = (12).to_bytes(4, "big") + b"moov" + bytes(4)
    sidx = make_sidx([(10, 1000)])
    assert parse_sidx(ftyp + moov + sidx, 0) == [(28 + len(sidx), 10, 1.0)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (make_sidx([(10, 1000)], nested=True), "further sidx"),
        (make_sidx([(10, 1000)])[:-4], "cut short"),
        (make_sidx([]), "no subsegments"),
        (make_sidx([(10, 1000)], timescale=0), "timescale is zero"),
        (b"\x00\x00\x00\x10moovxxxxxxxx", "no sidx"),
        (b"\x00\x00\x00\x03sidx", "impossible size"),
        (b"", "no sidx"),
    ],
)
def test_a_bad_sidx_is_a_playlist_error(data, reason):
    with pytest.raises(SidxError, match=reason) as raised:
        parse_sidx(data, 0)
    assert isinstance(raised.value, PlaylistError)


def test_the_sidx_of_a_real_single_file_dash_tiles_the_file(media):
    """ffmpeg's `-single_file 1` DASH: the subsegments cover every byte after the index."""
    manifest = (media.root / "dash-sb" / "ondemand.mpd").read_bytes()
    presentation = read_mpd(manifest, "http://origin.test/dash-sb/ondemand.mpd")
    assert {r.name for r in presentation.renditions} == {"v-0", "a-1"}
    for rendition in presentation.renditions:
        url, first, last = sidx_byte_range(presentation, rendition.name)
        data = (media.root / "dash-sb" / url.rsplit("/", 1)[1]).read_bytes()
        references = parse_sidx(data[first : last + 1], first)
        assert references[0][0] == last + 1
        for (offset, size, _), (following, _, _) in itertools.pairwise(references):
            assert offset + size == following
        assert references[-1][0] + references[-1][1] == len(data)
        assert sum(d for _, _, d in references) == pytest.approx(4.0, abs=0.05)
        # Parsing from the top of the file finds the same index.
        assert parse_sidx(data[: last + 1], 0) == references
        playlist = parsed_media(presentation, rendition.name, data[first : last + 1])
        assert playlist.segment_map[0].byterange == f"{first}@0"
        assert len(playlist.segments) == len(references)


@pytest.mark.parametrize(
    "path",
    ["dash/manifest.mpd", "dash-tl/manifest.mpd", "dash-sb/manifest.mpd", "dash-mp/manifest.mpd"],
)
def test_every_segment_of_ffmpegs_mpds_names_a_file_ffmpeg_wrote(media, path):
    base = "http://origin.test/"
    presentation = read_mpd((media.root / path).read_bytes(), base + path)
    for rendition in presentation.renditions:
        playlist = parsed_media(presentation, rendition.name)
        for item in [*playlist.segment_map, *playlist.segments]:
            file = media.root / item.uri.removeprefix(base)
            assert file.is_file(), item.uri
            if item.byterange:
                length, offset = map(int, item.byterange.split("@"))
                assert offset + length <= file.stat().st_size
        assert sum(durations(playlist)) == pytest.approx(presentation.duration, abs=0.05)


# -- the corpus ---------------------------------------------------------------------------------

STATIC = sorted(
    path.name
    for path in CORPUS.glob("*.mpd")
    if 'type="dynamic"' not in path.read_text(encoding="utf-8", errors="replace")
)
# Static corpus MPDs HLS cannot carry, each with the reason it is refused.
REFUSED = {
    "dash-js__laurl.mpd": "encrypted",
    "eyevinn-chaos-stream-proxy__dash_period_baseurl_manifest.mpd": "without Representations",
    "eyevinn-dash-mpd__multi-drm.mpd": "encrypted",
    "sangwonl-python-mpegdash__sample-001.mpd": "SegmentBase across several Periods",
    "sangwonl-python-mpegdash__utc_timing.mpd": "no Period with media",
    "sangwonl-python-mpegdash__with_content_protection.mpd": "encrypted",
    "shaka-player__clear-encrypted_manifest.mpd": "encrypted",
    "shaka-player__dash-aes-128_dash.mpd": "encrypted",
    "shaka-player__dash-clearkey_dash.mpd": "encrypted",
    "videojs-mpd-parser__608-captions.mpd": "index in a file of its own",
    "videojs-mpd-parser__locations.mpd": "index in a file of its own",
    "videojs-mpd-parser__maat_vtt_segmentTemplate.mpd": "encrypted",
    "videojs-mpd-parser__multiperiod-segment-list.mpd": "without an initialization segment",
    "videojs-mpd-parser__segmentList.mpd": "without an initialization segment",
    "videojs-mpd-parser__webmsegments.mpd": "not fMP4/CMAF",
}
# Test vectors whose segment lists stop short of the duration their MPD states.
SHORT = {
    "shaka-player__6339_master.mpd": 84 - 5 * 9.982,
    "dash-js__video_gap_at_start_timeline.mpd": 6.0,  # the timeline starts at 6 s
}


def synthetic_sidx(presentation, rendition) -> bytes | None:
    """A sidx that covers the presentation in 2 s subsegments, for MPDs with no media here."""
    if sidx_byte_range(presentation, rendition.name) is None:
        return None
    count = math.ceil(presentation.duration / 2)
    return make_sidx([(1000, 2000)] * count)


@pytest.mark.parametrize("name", STATIC)
def test_every_static_corpus_mpd_converts_or_is_refused_with_a_reason(name):
    body = (CORPUS / name).read_bytes()
    if name in REFUSED:
        with pytest.raises(DashToHlsError, match=re.escape(REFUSED[name])):
            read_mpd(body, "https://origin.example/a/b/" + name)
        return
    presentation = read_mpd(body, "https://origin.example/a/b/" + name)
    master = m3u8.loads(master_playlist(presentation, media_uri))
    assert master.is_variant and master.playlists
    named = {p.uri for p in master.playlists} | {m.uri for m in master.media}
    assert named <= {media_uri(r) for r in presentation.renditions}
    for rendition in presentation.renditions:
        text = media_playlist(
            presentation, rendition.name, same, synthetic_sidx(presentation, rendition)
        )
        playlist = m3u8.loads(text)
        assert playlist.is_endlist and playlist.playlist_type == "vod" and playlist.segments
        assert all(s.uri.startswith(("http://", "https://")) for s in playlist.segments)
        assert max(durations(playlist)) <= playlist.target_duration
        expected = presentation.duration - SHORT.get(name, 0.0)
        assert sum(durations(playlist)) == pytest.approx(expected, abs=playlist.target_duration)


@pytest.mark.parametrize(
    "name", sorted(p.name for p in CORPUS.glob("*.mpd") if p.name not in STATIC)
)
def test_dynamic_corpus_mpds_are_refused(name):
    with pytest.raises(DashToHlsError, match="dynamic MPDs cannot be served as HLS"):
        read_mpd((CORPUS / name).read_bytes(), "https://origin.example/" + name)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(st.data())
def test_a_mutated_corpus_mpd_converts_or_raises_dash_to_hls_error(data):
    body = bytearray((CORPUS / data.draw(st.sampled_from(STATIC))).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at : at + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=3))
    try:
        presentation = read_mpd(bytes(body), MPD_URL)
        master_playlist(presentation, media_uri)
        for rendition in presentation.renditions:
            media_playlist(presentation, rendition.name, same, make_sidx([(10, 1000)]))
    except DashToHlsError:
        pass


def test_the_module_says_what_it_exports():
    assert set(dash_hls.__all__) >= {
        "read_mpd",
        "master_playlist",
        "media_playlist",
        "sidx_byte_range",
    }
