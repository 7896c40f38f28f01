"""MPDs through the gateway: recognised by content, cached by type, refused when hostile."""

import asyncio

import aiohttp

MPD_HEAD = '<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"'
LIVE = (
    MPD_HEAD
    + ' type="dynamic" minimumUpdatePeriod="PT1S" availabilityStartTime="2026-01-01T00:00:00Z">'
    '<Period><AdaptationSet><SegmentTemplate media="$Number$.m4s"/></AdaptationSet></Period></MPD>'
)


async def fetch(session, url) -> tuple[int, dict, bytes]:
    async with session.get(url) as response:
        return response.status, dict(response.headers), await response.read()


async def test_an_mpd_is_served_as_dash_whatever_its_name(make_gateway, origin, media):
    gw = await make_gateway()
    origin.set_file("/dash/manifest.txt", media.read("/dash/manifest.mpd"))
    origin.behave("/dash/manifest.txt", content_type="text/plain")
    async with aiohttp.ClientSession() as session:
        status, headers, body = await fetch(
            session, gw.mint(origin.base_url + "/dash/manifest.txt")
        )
    assert status == 200
    assert headers["Content-Type"] == "application/dash+xml"
    assert body == media.read("/dash/manifest.mpd")  # everything relative and inside: untouched


async def test_a_dynamic_mpd_is_reused_no_longer_than_its_update_period(make_gateway, origin):
    gw = await make_gateway()
    origin.set_file("/live/x.mpd", LIVE.encode())
    url = gw.mint(origin.base_url + "/live/x.mpd")
    async with aiohttp.ClientSession() as session:
        _, headers, first = await fetch(session, url)
        await fetch(session, url)
        assert origin.count("/live/x.mpd") == 1
        await asyncio.sleep(1.1)
        await fetch(session, url)
    assert origin.count("/live/x.mpd") == 2
    assert headers["Cache-Control"] == "public, max-age=1"
    assert 'availabilityStartTime="2026-01-01T00:00:00Z"' in first.decode()


async def test_a_billion_laughs_mpd_is_a_502_with_one_line(make_gateway, origin):
    gw = await make_gateway()
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE MPD [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011">&b;</MPD>'
    )
    origin.set_file("/evil.mpd", laughs.encode())
    async with aiohttp.ClientSession() as session:
        status, _, body = await fetch(session, gw.mint(origin.base_url + "/evil.mpd"))
    assert status == 502 and body.count(b"\n") == 1 and b"DTD" in body


async def test_a_truncated_mpd_is_a_502(make_gateway, origin, media):
    gw = await make_gateway()
    origin.set_file("/cut.mpd", media.read("/dash/manifest.mpd")[:700])
    async with aiohttp.ClientSession() as session:
        status, _, body = await fetch(session, gw.mint(origin.base_url + "/cut.mpd"))
    assert status == 502 and b"well-formed" in body


# -- conformance over real-world MPDs ---------------------------------------------------------

import re  # noqa: E402

import pytest  # noqa: E402
from lxml import etree  # noqa: E402

from gateway.links import PREFIX  # noqa: E402
from playlists.urls import resolve  # noqa: E402
from tests.support.corpus import DASH_CORPUS as CORPUS  # noqa: E402

LENIENT = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)


def first(element, name):
    found = element.find(f"{{*}}{name}")
    return found


def base_of(element, base: str) -> str:
    tag = first(element, "BaseURL")
    return resolve(base, (tag.text or "").strip()) if tag is not None else base


def template_value(levels, attribute: str):
    for level in reversed(levels):
        template = first(level, "SegmentTemplate")
        if template is not None and template.get(attribute):
            return template, template.get(attribute)
    return None, None


def fill(template: str, representation, start: str) -> str:
    def one(match: re.Match) -> str:
        name, fmt = match.group(1), match.group(2)
        value = {
            "RepresentationID": representation.get("id", ""),
            "Number": start,
            "Time": "0",
            "Bandwidth": representation.get("bandwidth", "0"),
            "SubNumber": "0",
        }.get(name)
        if value is None:
            return match.group(0)
        return (fmt % int(value)) if fmt and value.isdigit() else value

    return re.sub(r"\$(\w+)(%0\d+d)?\$", one, template).replace("$$", "$")


def player_urls(mpd_bytes: bytes, mpd_url: str) -> list[str]:
    """What a player would request first for every Representation: init, index, first media."""
    root = etree.fromstring(mpd_bytes, LENIENT)
    urls = []
    mpd_base = base_of(root, mpd_url)
    for period in root.iter("{*}Period"):
        if period.get("{http://www.w3.org/1999/xlink}href"):
            continue
        period_base = base_of(period, mpd_base)
        for adaptation in period.iter("{*}AdaptationSet"):
            adaptation_base = base_of(adaptation, period_base)
            # Templates may live on the AdaptationSet with no Representation below it.
            for representation in list(adaptation.iter("{*}Representation")) or [adaptation]:
                base = base_of(representation, adaptation_base)
                levels = [period, adaptation, representation]
                for attribute in ("initialization", "media", "index"):
                    template, value = template_value(levels, attribute)
                    if value:
                        urls.append(
                            resolve(
                                base, fill(value, representation, template.get("startNumber", "1"))
                            )
                        )
                segment_list = first(representation, "SegmentList")
                if segment_list is None:
                    segment_list = first(adaptation, "SegmentList")
                if segment_list is not None:
                    init = first(segment_list, "Initialization")
                    if init is not None and init.get("sourceURL"):
                        urls.append(resolve(base, init.get("sourceURL")))
                    for segment in segment_list.iter("{*}SegmentURL"):
                        urls.append(resolve(base, segment.get("media", "")))
                        break
                addressed = segment_list is not None or any(
                    template_value(levels, a)[1] for a in ("media", "initialization")
                )
                if not addressed and base != mpd_url:
                    urls.append(base)  # SegmentBase or a bare BaseURL: the file itself
    return urls


def upstream_of(gw, url: str) -> str:
    path = url[url.index(PREFIX) + len(PREFIX) :]
    token, _, rest = path.partition("/")
    return gw.state.links.signer.verify(token).directory + rest


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.mpd")))
@pytest.mark.parametrize("redirected", [False, True], ids=["direct", "redirected"])
async def test_corpus_mpds_lead_players_to_the_urls_the_original_meant(
    make_gateway, origin, name, redirected
):
    gw = await make_gateway()
    original = (CORPUS / name).read_bytes()
    home = f"/corpus/a/b/{name}"
    origin.set_file(home, original)
    requested = home
    if redirected:
        requested = f"/elsewhere/{name}"
        origin.behave(requested, redirect=home)
    mpd_url = gw.mint(origin.base_url + requested)
    async with aiohttp.ClientSession() as session:
        status, _, served = await fetch(session, mpd_url)
    assert status == 200, served
    meant = player_urls(original, origin.base_url + home)
    got = player_urls(served, mpd_url)
    if not meant:
        pytest.skip("no Representation a player could start")
    assert len(meant) == len(got)
    for want, have in zip(meant, got, strict=True):
        if have.startswith(gw.base_url + PREFIX):
            assert upstream_of(gw, have) == want
        else:
            assert have == want  # absolute URLs elsewhere that a player fetches directly: none
            assert not want.startswith("http")
