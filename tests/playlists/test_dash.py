"""MPD rewriting: every URL leads back to the gateway, everything else stays byte-identical."""

import pytest
from lxml import etree

from playlists import dash
from playlists.errors import PlaylistError
from playlists.urls import resolve
from tests.support.corpus import DASH_CORPUS as CORPUS

BASE = "https://origin.example/vod/title/manifest.mpd"
KEEP = "https://origin.example/vod/title/"


def ref(url: str) -> str:
    """A stand-in for the gateway: a directory-relative reference that names the URL."""
    return "../G/" + url.replace("://", "~")


def rewrite(body: str, *, keep: str | None = KEEP, base: str = BASE) -> str:
    return dash.rewrite_mpd(
        body.encode(), base_url=base, keep_relative_inside=keep, make_ref=ref, max_bytes=10**7
    ).decode()


def mpd(inner: str, attrs: str = ' type="static"') -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"{attrs}>\n{inner}\n</MPD>\n'
    )


TEMPLATE = (
    '<Period><AdaptationSet><SegmentTemplate media="chunk-$RepresentationID$-$Number%05d$.m4s" '
    'initialization="init-$RepresentationID$.m4s" startNumber="1"/>'
    '<Representation id="v1" bandwidth="1"/></AdaptationSet></Period>'
)


def test_an_mpd_whose_references_stay_inside_its_directory_is_byte_identical():
    body = mpd(TEMPLATE)
    assert rewrite(body) == body


def test_absolute_base_urls_are_rewritten_and_templates_below_them_stay_relative():
    body = mpd("<BaseURL>https://cdn.example/media/</BaseURL>\n" + TEMPLATE)
    out = rewrite(body)
    assert "<BaseURL>../G/https~cdn.example/media/</BaseURL>" in out
    assert 'media="chunk-$RepresentationID$-$Number%05d$.m4s"' in out
    assert out.replace("../G/https~cdn.example/media/", "https://cdn.example/media/") == body


def test_every_sibling_base_url_is_rewritten():
    body = mpd(
        '<BaseURL serviceLocation="a" dvb:priority="1" xmlns:dvb="urn:dvb:dash">https://a.example/x/</BaseURL>'
        '<BaseURL serviceLocation="b">https://b.example/y/</BaseURL>' + TEMPLATE
    )
    out = rewrite(body)
    assert "../G/https~a.example/x/" in out and "../G/https~b.example/y/" in out
    assert 'serviceLocation="a" dvb:priority="1"' in out


def test_nested_relative_base_urls_resolve_level_by_level():
    body = mpd(
        "<BaseURL>https://cdn.example/root/</BaseURL><Period><BaseURL>p1/</BaseURL>"
        "<AdaptationSet><BaseURL>../other/</BaseURL><Representation id='r'>"
        "<SegmentList><SegmentURL media='s1.m4s'/></SegmentList></Representation>"
        "</AdaptationSet></Period>"
    )
    out = rewrite(body)
    # Both relative BaseURLs stay inside the directory the rewritten root maps: kept as written.
    assert "<BaseURL>p1/</BaseURL>" in out and "<BaseURL>../other/</BaseURL>" in out
    gateway_root = "https://gw.example/p/T/manifest.mpd"
    chain = resolve(
        resolve(resolve(gateway_root, "../G/https~cdn.example/root/"), "p1/"),
        _between(out, "<AdaptationSet><BaseURL>", "</BaseURL>"),
    )
    assert resolve(chain, "s1.m4s") == "https://gw.example/p/G/https~cdn.example/root/other/s1.m4s"


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def test_references_that_leave_the_directory_are_rewritten():
    body = mpd(
        "<Period><AdaptationSet><Representation id='r'><SegmentList>"
        "<Initialization sourceURL='/abs/init.mp4'/><SegmentURL media='../up.m4s' index='idx.sidx'/>"
        "</SegmentList><SegmentBase><RepresentationIndex sourceURL='https://x.example/i.sidx'/>"
        "</SegmentBase></Representation></AdaptationSet></Period>"
    )
    out = rewrite(body)
    assert "sourceURL='../G/https~origin.example/abs/init.mp4'" in out
    assert "media='../G/https~origin.example/vod/up.m4s'" in out
    assert "index='idx.sidx'" in out
    assert "sourceURL='../G/https~x.example/i.sidx'" in out


def test_a_redirected_mpd_gets_one_base_url_for_its_new_home():
    body = mpd("<ProgramInformation/>\n" + TEMPLATE)
    out = rewrite(body, keep=None, base="https://moved.example/new/place/manifest.mpd")
    assert out.count("<BaseURL>") == 1
    assert "<BaseURL>../G/https~moved.example/new/place/</BaseURL>" in out
    assert out.index("<ProgramInformation/>") < out.index("<BaseURL>")
    assert 'media="chunk-$RepresentationID$-$Number%05d$.m4s"' in out


def test_a_prefixed_mpd_namespace_is_kept_and_used_for_an_inserted_base_url():
    body = (
        '<mpd:MPD xmlns:mpd="urn:mpeg:dash:schema:mpd:2011"><mpd:Period>'
        '<mpd:AdaptationSet><mpd:SegmentTemplate media="a/$Number$.m4s"/></mpd:AdaptationSet>'
        "</mpd:Period></mpd:MPD>"
    )
    out = rewrite(body, keep=None)
    assert "<mpd:BaseURL>../G/https~origin.example/vod/title/</mpd:BaseURL>" in out
    etree.fromstring(out.encode())


def test_location_patch_location_xlink_and_steering_are_rewritten():
    body = mpd(
        "<Location>https://origin.example/live/m.mpd?t=1&amp;u=2</Location>"
        "<PatchLocation ttl='60'>https://patch.example/p</PatchLocation>"
        "<ContentSteering defaultServiceLocation='a'>https://steer.example/s.json</ContentSteering>"
        "<Period xlink:href='https://ads.example/period.xml' xlink:actuate='onLoad'/>"
        "<Period xlink:href='urn:mpeg:dash:resolve-to-zero:2013'/>",
        ' xmlns:xlink="http://www.w3.org/1999/xlink"',
    )
    out = rewrite(body)
    assert "<Location>../G/https~origin.example/live/m.mpd?t=1&amp;u=2</Location>" in out
    assert "../G/https~patch.example/p" in out and "../G/https~steer.example/s.json" in out
    assert "xlink:href='../G/https~ads.example/period.xml'" in out
    assert "xlink:href='urn:mpeg:dash:resolve-to-zero:2013'" in out


def test_licence_servers_clocks_and_events_are_left_alone():
    body = mpd(
        "<UTCTiming schemeIdUri='urn:mpeg:dash:utc:http-xsdate:2014' value='https://time.example/'/>"
        "<Period><EventStream schemeIdUri='x'><Event>https://ev.example/x</Event></EventStream>"
        "<AdaptationSet><ContentProtection schemeIdUri='urn:uuid:x'>"
        "<dashif:Laurl xmlns:dashif='https://dashif.org/CPS'>https://lic.example/</dashif:Laurl>"
        "</ContentProtection></AdaptationSet></Period>"
    )
    assert rewrite(body) == body


@pytest.mark.parametrize(
    "body",
    [
        '<?xml version="1.0"?><!DOCTYPE MPD [<!ENTITY a "aaaa">]><MPD xmlns="urn:mpeg:dash:schema:mpd:2011">&a;</MPD>',
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period>',
        "<html><body>not an mpd</body></html>",
        '<MPD xmlns="urn:other">x</MPD>',
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period/></MPD><!-- trailing -->\x00',
        "\x00\x01binary",
        '<?xml version="1.0"?><dashif:Laurl>an undeclared prefix on the root</dashif:Laurl>',
    ],
)
def test_hostile_or_malformed_documents_are_refused(body):
    with pytest.raises(PlaylistError):
        rewrite(body)


def test_the_size_limit_is_enforced():
    with pytest.raises(PlaylistError, match="larger than"):
        dash.rewrite_mpd(
            mpd(TEMPLATE).encode(),
            base_url=BASE,
            keep_relative_inside=KEEP,
            make_ref=ref,
            max_bytes=100,
        )


def test_is_mpd_reads_the_start_of_a_body():
    assert dash.is_mpd(
        b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- c -->\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011">'
    )
    assert dash.is_mpd(b"<mpd:MPD xmlns:mpd='urn:mpeg:dash:schema:mpd:2011'>")
    assert not dash.is_mpd(b"#EXTM3U\n")
    assert not dash.is_mpd(b"<html>")


@pytest.mark.parametrize(
    ("attrs", "dynamic", "period"),
    [
        (' type="static"', False, None),
        (' type="dynamic" minimumUpdatePeriod="PT2S"', True, 2.0),
        (' type="dynamic" minimumUpdatePeriod="P0Y0M0DT0H1M0.500S"', True, 60.5),
    ],
)
def test_inspect_reads_type_and_update_period(attrs, dynamic, period):
    info = dash.inspect_mpd(mpd(TEMPLATE, attrs).encode())
    assert (info.is_dynamic, info.minimum_update_period) == (dynamic, period)


def test_a_live_mpd_keeps_its_timing_attributes_and_timeline():
    body = mpd(
        "<Period start='PT0S'><AdaptationSet><SegmentTemplate media='$Time$.m4s' timescale='90000'>"
        "<SegmentTimeline><S t='0' d='180000' r='99'/></SegmentTimeline></SegmentTemplate>"
        "</AdaptationSet></Period>",
        ' type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" publishTime="2026-01-01T00:10:00Z"',
    )
    assert (
        rewrite(body, keep=None).replace(
            "<BaseURL>../G/https~origin.example/vod/title/</BaseURL>\n", ""
        )
        == body
    )


CORPUS_FILES = sorted(CORPUS.glob("*.mpd")) if CORPUS.is_dir() else []


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_mpds_stay_well_formed_with_every_template_intact(path):
    original = path.read_bytes()
    out = dash.rewrite_mpd(
        original,
        base_url="https://origin.example/a/b/manifest.mpd",
        keep_relative_inside=None,
        make_ref=lambda u: "https://gw.example/R/" + u.replace("://", "~"),
        max_bytes=10**8,
    )
    lenient = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
    before, after = etree.fromstring(original, lenient), etree.fromstring(out, lenient)
    tags_before = [e.tag for e in before.iter() if isinstance(e.tag, str)]
    tags_after = [e.tag for e in after.iter() if isinstance(e.tag, str)]
    inserted = len(tags_after) - len(tags_before)
    assert inserted in (0, 1)
    assert [t for t in tags_after if not t.endswith("BaseURL")] == [
        t for t in tags_before if not t.endswith("BaseURL")
    ]
    for old, new in zip(
        before.iter("{*}SegmentTemplate"), after.iter("{*}SegmentTemplate"), strict=True
    ):
        for attribute in ("media", "initialization"):
            if old.get(attribute):
                identifiers = sorted(part for part in old.get(attribute).split("$")[1::2])
                assert sorted(new.get(attribute).split("$")[1::2]) == identifiers
    mpegdash = pytest.importorskip("mpegdash.parser")
    try:
        mpegdash.MPEGDASHParser.parse(original.decode("utf-8-sig"))
    except Exception:
        return
    mpegdash.MPEGDASHParser.parse(out.decode("utf-8-sig"))
