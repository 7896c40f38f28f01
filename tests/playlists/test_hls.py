"""HLS playlists: recognition, inspection, and a rewrite that changes only the URIs it must."""

from __future__ import annotations

import re
import timeit

import m3u8
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.links import RefMaker
from gateway.signing import Grant, Signer
from playlists.errors import PlaylistError
from playlists.hls import (
    _FLAT_NAMES,
    PlaylistInfo,
    _one_absolute_directory,
    _Rewriter,
    inspect,
    is_playlist,
    rewrite,
)
from playlists.urls import resolve
from tests.support.corpus import HLS_CORPUS as CORPUS

BASE = "https://origin.example/vod/movie/index.m3u8?token=abc"
DIRECTORY = "https://origin.example/vod/movie/"


def ref(url: str) -> str:
    return "REF(" + url + ")"


def run(text: str | bytes, *, keep: str | None = DIRECTORY, base: str = BASE) -> str:
    body = text.encode() if isinstance(text, str) else text
    return rewrite(body, base_url=base, keep_relative_inside=keep, make_ref=ref).decode()


def media(*lines: str) -> str:
    return "#EXTM3U\n#EXT-X-TARGETDURATION:4\n" + "\n".join(lines) + "\n#EXT-X-ENDLIST\n"


# --- is_playlist ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [b"#EXTM3U\n", b"\xef\xbb\xbf#EXTM3U\r\n", b"\n\n  #EXTM3U\n#EXT-X-VERSION:3", b"#EXTM3U"],
)
def test_a_playlist_starts_with_extm3u_after_optional_bom_and_whitespace(head):
    assert is_playlist(head)


@pytest.mark.parametrize(
    "head", [b"", b"<MPD>", b"# EXTM3U", b"x#EXTM3U", b"\xef\xbb\xbf", b"EXTM3U"]
)
def test_anything_else_is_not_a_playlist(head):
    assert not is_playlist(head)


# --- inspect -------------------------------------------------------------------------------


def test_inspect_recognises_a_master_playlist():
    body = b'#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",URI="a.m3u8"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n'
    info = inspect(body)
    assert info.is_master
    assert not info.is_live


def test_inspect_reads_a_vod_playlist():
    body = b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:6,\na.ts\n#EXT-X-ENDLIST\n"
    assert inspect(body) == PlaylistInfo(
        is_master=False,
        has_endlist=True,
        target_duration=6.0,
        media_sequence=7,
        playlist_type="VOD",
    )
    assert not inspect(body).is_live


def test_inspect_treats_a_playlist_without_endlist_as_live():
    info = inspect(
        b"#EXTM3U\r\n#EXT-X-TARGETDURATION:2\r\n#EXT-X-MEDIA-SEQUENCE:1234\r\n#EXTINF:2,\r\na.ts\r\n"
    )
    assert info.is_live
    assert info.media_sequence == 1234
    assert info.target_duration == 2.0
    assert info.playlist_type is None


def test_inspect_treats_an_event_playlist_as_live_until_it_ends():
    body = b"#EXTM3U\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n"
    assert inspect(body).playlist_type == "EVENT"
    assert inspect(body).is_live
    assert not inspect(body + b"#EXT-X-ENDLIST\n").is_live


def test_inspect_counts_a_vod_playlist_without_endlist_as_finished():
    assert not inspect(b"#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:4,\na.ts\n").is_live


def test_inspect_tolerates_garbage_values():
    info = inspect(
        b"#EXTM3U\n#EXT-X-TARGETDURATION:1.2.3\n#EXT-X-MEDIA-SEQUENCE:x\n#EXTINF:4,\na.ts\n"
    )
    assert info.target_duration is None
    assert info.media_sequence == 0


# --- rewrite: URI lines --------------------------------------------------------------------


def test_relative_segments_inside_the_kept_directory_stay_byte_identical():
    body = media(
        "#EXTINF:4,", "seg1.ts", "#EXTINF:4,", "sub/seg2.ts?x=1", "#EXTINF:4,", "./seg3.ts"
    )
    assert run(body) == body


def test_a_redirected_playlist_gets_every_http_uri_rewritten():
    body = media("#EXTINF:4,", "seg1.ts", "#EXTINF:4,", "https://cdn.example/a/seg2.ts")
    assert run(body, keep=None) == media(
        "#EXTINF:4,",
        ref(DIRECTORY + "seg1.ts"),
        "#EXTINF:4,",
        ref("https://cdn.example/a/seg2.ts"),
    )


@pytest.mark.parametrize(
    ("written", "absolute"),
    [
        ("/other/seg.ts", "https://origin.example/other/seg.ts"),
        ("//cdn.example/x.ts", "https://cdn.example/x.ts"),
        ("../x.ts", "https://origin.example/vod/x.ts"),
        ("a/../../x.ts", "https://origin.example/vod/x.ts"),
        ("http://cdn.example/x.ts", "http://cdn.example/x.ts"),
        ("HTTPS://cdn.example/x.ts", "HTTPS://cdn.example/x.ts"),
    ],
)
def test_uris_that_leave_the_directory_are_rewritten(written, absolute):
    assert run(media("#EXTINF:4,", written)) == media("#EXTINF:4,", ref(absolute))


def test_an_absolute_url_into_the_kept_directory_is_still_rewritten():
    # Only relative references follow the gateway URL; an absolute one would go to the origin.
    url = DIRECTORY + "seg.ts"
    assert run(media("#EXTINF:4,", url)) == media("#EXTINF:4,", ref(url))


@pytest.mark.parametrize(
    "written",
    ["skd://key-id", "data:text/plain;base64,AAAA", "urn:uuid:1234", "blob:abc", "about:blank"],
)
def test_non_http_uris_stay_byte_identical(written):
    body = media(f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="{written}"', "#EXTINF:4,", written)
    assert run(body, keep=None) == body


def test_surrounding_whitespace_of_a_uri_line_is_kept():
    assert run(media("#EXTINF:4,", "  ../x.ts\t")) == media(
        "#EXTINF:4,", "  " + ref("https://origin.example/vod/x.ts") + "\t"
    )


def test_tags_between_extinf_and_its_uri_line_are_untouched():
    body = media(
        "#EXTINF:4,title, with commas",
        "#EXT-X-BYTERANGE:100@0",
        "#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z",
        "#EXT-X-DISCONTINUITY",
        "# a comment mentioning http://x/y.ts",
        "../x.ts",
    )
    out = run(body)
    assert out == body.replace("\n../x.ts\n", "\n" + ref("https://origin.example/vod/x.ts") + "\n")


def test_a_comment_or_tag_indented_with_spaces_is_not_a_uri():
    body = media("#EXTINF:4,", "seg.ts", "   #EXT-X-DISCONTINUITY", "\t# note")
    assert run(body, keep=None) == media(
        "#EXTINF:4,", ref(DIRECTORY + "seg.ts"), "   #EXT-X-DISCONTINUITY", "\t# note"
    )


def test_an_extinf_title_is_never_taken_for_a_uri_attribute():
    body = media('#EXTINF:4,URI="http://x/y"', "seg.ts")
    assert run(body) == body


# --- rewrite: byte preservation --------------------------------------------------------------


def test_bom_crlf_blank_lines_and_missing_final_newline_are_preserved_byte_for_byte():
    body = b"\xef\xbb\xbf#EXTM3U\r\n\r\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\r\n../a.ts\r\n\n#EXTINF:4,\nb.ts"
    out = rewrite(body, base_url=BASE, keep_relative_inside=DIRECTORY, make_ref=ref)
    assert out == body.replace(b"../a.ts", ref("https://origin.example/vod/a.ts").encode())


def test_a_playlist_with_nothing_to_change_comes_back_as_the_same_bytes():
    body = media("#EXT-X-FOO:BAR=1", "#EXTINF:4,", "seg.ts").encode()
    assert rewrite(body, base_url=BASE, keep_relative_inside=DIRECTORY, make_ref=ref) is body


def test_non_ascii_text_survives_the_rewrite():
    body = media(
        '#EXT-X-MEDIA:TYPE=AUDIO,NAME="Français",URI="../fr.m3u8"', "#EXTINF:4,Ünïcödé", "séance.ts"
    )
    assert run(body) == body.replace("../fr.m3u8", ref("https://origin.example/vod/fr.m3u8"))


# --- rewrite: URI attributes ---------------------------------------------------------------

ATTRIBUTE_TAGS = [
    '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",URI="{}"',
    '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1000,URI="{}"',
    '#EXT-X-KEY:METHOD=AES-128,URI="{}",IV=0x0123',
    '#EXT-X-SESSION-KEY:METHOD=AES-128,URI="{}"',
    '#EXT-X-MAP:URI="{}",BYTERANGE="100@0"',
    '#EXT-X-PART:DURATION=0.5,URI="{}",INDEPENDENT=YES',
    '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{}"',
    '#EXT-X-RENDITION-REPORT:URI="{}",LAST-MSN=10,LAST-PART=2',
    '#EXT-X-SESSION-DATA:DATA-ID="com.example.title",URI="{}"',
    '#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=100,RESOLUTION=320x180,CODECS="jpeg",URI="{}"',
    '#EXT-X-TILES:RESOLUTION=320x180,LAYOUT=5x4,URI="{}"',
    '#EXT-X-CONTENT-STEERING:SERVER-URI="{}",PATHWAY-ID="CDN-A"',
    '#EXT-X-DATERANGE:ID="ad1",CLASS="com.apple.hls.interstitial",START-DATE="2024-01-01T00:00:00Z",X-ASSET-URI="{}"',
    '#EXT-X-DATERANGE:ID="ad2",START-DATE="2024-01-01T00:00:00Z",X-ASSET-LIST="{}"',
    '#EXT-X-DATERANGE:ID="ad3",START-DATE="2024-01-01T00:00:00Z",X-COM-EXAMPLE-BEACON-URL="{}"',
    '#EXT-X-DATERANGE:ID="ad4",START-DATE="2024-01-01T00:00:00Z",X-COM-EXAMPLE-URI="{}"',
]


@pytest.mark.parametrize("template", ATTRIBUTE_TAGS)
def test_uri_attributes_outside_the_directory_are_rewritten(template):
    body = media(template.format("../up/x.bin"), "#EXTINF:4,", "seg.ts")
    expected = media(
        template.format(ref("https://origin.example/vod/up/x.bin")), "#EXTINF:4,", "seg.ts"
    )
    assert run(body) == expected


@pytest.mark.parametrize("template", ATTRIBUTE_TAGS)
def test_relative_uri_attributes_inside_the_directory_are_kept(template):
    body = media(template.format("sub/x.bin"), "#EXTINF:4,", "seg.ts")
    assert run(body) == body


@pytest.mark.parametrize("template", ATTRIBUTE_TAGS)
def test_uri_attributes_of_a_redirected_playlist_are_rewritten(template):
    body = media(template.format("x.bin"))
    assert run(body, keep=None) == media(template.format(ref(DIRECTORY + "x.bin")))


def test_quoted_commas_and_equals_signs_do_not_split_attributes():
    line = '#EXT-X-MEDIA:TYPE=SUBTITLES,NAME="a,URI=b",CHARACTERISTICS="x,y=z",URI="../s,1.m3u8",LANGUAGE="en"'
    assert run(media(line)) == media(
        line.replace("../s,1.m3u8", ref("https://origin.example/vod/s,1.m3u8"))
    )


def test_uri_looking_text_in_other_attributes_is_not_a_uri():
    line = '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="../g",NAME="http://x/y",URI="a.m3u8"'
    assert run(media(line), keep=None) == media(
        line.replace('"a.m3u8"', f'"{ref(DIRECTORY + "a.m3u8")}"')
    )


def test_daterange_client_attributes_that_are_not_urls_are_untouched():
    line = '#EXT-X-DATERANGE:ID="x",START-DATE="2024-01-01T00:00:00Z",X-COM-FOO-URL="not a url",X-TITLE="a/b",X-COM-EMPTY-URI=""'
    assert run(media(line), keep=None) == media(line)


def test_an_unquoted_uri_attribute_is_left_alone():
    line = "#EXT-X-FOO:URI=../x.ts"
    assert run(media(line)) == media(line)


def test_a_malformed_attribute_does_not_hide_the_uri_after_it():
    line = '#EXT-X-KEY:METHOD=AES-128,junk,IV=0x1,URI="../k"'
    assert run(media(line)) == media(line.replace("../k", ref("https://origin.example/vod/k")))


def test_several_uri_attributes_on_one_line_are_all_rewritten():
    line = '#EXT-X-DATERANGE:ID="a",START-DATE="2024-01-01T00:00:00Z",X-ASSET-URI="/a.m3u8",X-COM-X-URL="https://t.example/b"'
    expected = line.replace("/a.m3u8", ref("https://origin.example/a.m3u8")).replace(
        "https://t.example/b", ref("https://t.example/b")
    )
    assert run(media(line)) == media(expected)


# --- rewrite: EXT-X-DEFINE -----------------------------------------------------------------


def test_defined_variables_are_substituted_before_resolving():
    body = media(
        '#EXT-X-DEFINE:NAME="cdn",VALUE="https://cdn.example/p"', "#EXTINF:4,", "{$cdn}/seg.ts"
    )
    assert run(body) == body.replace("{$cdn}/seg.ts", ref("https://cdn.example/p/seg.ts"))


def test_a_substituted_uri_that_stays_inside_keeps_its_original_text():
    body = media(
        '#EXT-X-DEFINE:NAME="v",VALUE="720p"',
        '#EXT-X-MAP:URI="{$v}/init.mp4"',
        "#EXTINF:4,",
        "{$v}/seg.ts",
    )
    assert run(body) == body


def test_queryparam_variables_come_from_the_playlist_url():
    body = media('#EXT-X-DEFINE:QUERYPARAM="token"', "#EXTINF:4,", "../seg.ts?token={$token}")
    assert run(body) == body.replace(
        "../seg.ts?token={$token}", ref("https://origin.example/vod/seg.ts?token=abc")
    )


def test_a_queryparam_missing_from_the_url_leaves_the_uri_alone():
    body = media('#EXT-X-DEFINE:QUERYPARAM="missing"', "#EXTINF:4,", "../seg.ts?t={$missing}")
    assert run(body) == body


def test_imported_variables_are_left_for_the_player():
    body = media(
        '#EXT-X-DEFINE:IMPORT="auth"',
        '#EXT-X-MAP:URI="../init.mp4{$auth}"',
        "#EXTINF:4,",
        "../seg.ts{$auth}",
    )
    assert run(body, keep=None) == body


# --- rewrite: errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>not a playlist</html>",
        b"#EXTM3U\n#EXTINF:4,\nseg\x00.ts\n",
        b"#EXTM3U\n#EXTINF:4,\nse\xffg.ts\n",
        b"#EXTM3U\n\xc3(",
    ],
)
def test_unusable_bodies_raise_playlist_error_with_one_line(body):
    with pytest.raises(PlaylistError) as caught:
        rewrite(body, base_url=BASE, keep_relative_inside=None, make_ref=ref)
    assert "\n" not in str(caught.value)


# --- speed ---------------------------------------------------------------------------------


def test_a_ten_thousand_segment_vod_playlist_rewrites_quickly():
    body = media(*(f"#EXTINF:4.000,\nseg_{i:05d}.ts" for i in range(10_000))).encode()
    number = 20
    kept = timeit.timeit(
        lambda: rewrite(body, base_url=BASE, keep_relative_inside=DIRECTORY, make_ref=ref),
        number=number,
    )
    redirected = timeit.timeit(
        lambda: rewrite(body, base_url=BASE, keep_relative_inside=None, make_ref=ref), number=number
    )
    print(
        f"\n10k segments: kept relative {kept / number * 1e3:.2f} ms, all rewritten {redirected / number * 1e3:.2f} ms"
    )
    assert rewrite(body, base_url=BASE, keep_relative_inside=DIRECTORY, make_ref=ref) is body


# --- properties ----------------------------------------------------------------------------

_NAMES = st.text(alphabet="abcXYZ019-_.%~", min_size=1, max_size=8)
_URIS = st.one_of(
    _NAMES.map(lambda n: n + ".ts"),
    st.tuples(_NAMES, _NAMES).map(lambda p: f"{p[0]}/{p[1]}.ts"),
    _NAMES.map(lambda n: "../" + n + ".ts"),
    _NAMES.map(lambda n: "./" + n + ".ts?x=1"),
    _NAMES.map(lambda n: "/abs/" + n + ".ts"),
    _NAMES.map(lambda n: "//cdn.example/" + n + ".ts"),
    _NAMES.map(lambda n: "https://cdn.example/" + n + ".ts"),
    _NAMES.map(lambda n: "skd://" + n),
)
_PADDING = st.sampled_from(["", " ", "\t"])
_EXTRA_TAGS = st.lists(
    st.sampled_from(
        ["#EXT-X-DISCONTINUITY", "#EXT-X-BYTERANGE:10@0", "# comment", "", '#EXT-X-VENDOR:A="x,y"']
    ),
    max_size=3,
)
_SEGMENTS = st.lists(st.tuples(_EXTRA_TAGS, _PADDING, _URIS, _PADDING), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    segments=_SEGMENTS,
    endings=st.lists(st.sampled_from(["\n", "\r\n"]), min_size=1),
    keep=st.sampled_from([DIRECTORY, "https://origin.example/vod/", None]),
    bom=st.booleans(),
)
def test_rewriting_keeps_line_count_and_every_line_without_a_uri(segments, endings, keep, bom):
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4"]
    uri_lines: set[int] = set()
    for extra, before, uri, after in segments:
        lines.append("#EXTINF:4,")
        lines.extend(extra)
        uri_lines.add(len(lines))
        lines.append(before + uri + after)
    text = "".join(line + endings[i % len(endings)] for i, line in enumerate(lines))
    body = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    out = rewrite(body, base_url=BASE, keep_relative_inside=keep, make_ref=ref)
    assert out.startswith(b"\xef\xbb\xbf") == bom
    before_lines = body.split(b"\n")
    after_lines = out.split(b"\n")
    assert len(after_lines) == len(before_lines)
    for index, (old, new) in enumerate(zip(before_lines, after_lines, strict=True)):
        if index not in uri_lines:
            assert new == old
        elif new != old:
            written = old.decode().strip()
            assert new.decode().strip() == ref(resolve(BASE, written))
            assert new.endswith(b"\r") == old.endswith(b"\r")
        else:
            written = old.decode().strip()
            absolute = resolve(BASE, written)
            assert not absolute.startswith("http") or (
                keep is not None and not written.startswith("/") and absolute.startswith(keep)
            )


_CDN = "https://cdn.example/vod/title/"


# Segment names with every character that could trip a one-pass rewrite.
_ODD_NAMES = st.lists(
    st.text(alphabet=st.sampled_from("ab0._-~%$?=&/ #\\{}"), min_size=0, max_size=8),
    min_size=1,
    max_size=12,
)
_ENDINGS = st.sampled_from(["\n", "\r\n"])


def vod_playlist(uris: list[str], tags: list[str], ending: str) -> bytes:
    """A media playlist of `uris` after `tags`, every line ended by `ending`."""
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4", *tags]
    for uri in uris:
        lines += ["#EXTINF:4,", uri]
    return (ending.join(lines) + ending).encode()


@settings(max_examples=300, deadline=None)
@given(
    names=_ODD_NAMES,
    stray=st.sampled_from(
        ["", "https://other.example/x/", "rel/", "HTTPS://cdn.example/vod/title/"]
    ),
    key=st.booleans(),
    ending=_ENDINGS,
)
# Names past the first that the whole-text checks must not wave through.
@example(names=["c", "a/b"], stray="", key=False, ending="\n")
@example(names=["c", "?q"], stray="", key=False, ending="\n")
@example(names=["c", ""], stray="", key=False, ending="\n")
@example(names=["c", "d"], stray="", key=False, ending="\r\n")
@example(names=["c", "d?x=/y&z={1}"], stray="", key=False, ending="\n")
def test_a_one_directory_playlist_rewrites_the_same_in_one_pass_as_line_by_line(
    names, stray, key, ending
):
    tags = ['#EXT-X-KEY:METHOD=AES-128,URI="https://keys.example/k/1.key"'] if key else []
    uris = [(stray if index == 1 and stray else _CDN) + name for index, name in enumerate(names)]
    body = vod_playlist(uris, tags, ending)

    def refs() -> RefMaker:
        return RefMaker(Signer(b"test-secret-0123456789"), Grant("https://cdn.example/"), "../")

    one_pass = refs()
    expected = rewrite(
        body, base_url=_CDN + "index.m3u8", keep_relative_inside=_CDN, make_ref=refs()
    )
    got = rewrite(
        body,
        base_url=_CDN + "index.m3u8",
        keep_relative_inside=_CDN,
        make_ref=one_pass,
        directory_ref=one_pass.directory,
    )
    assert got == expected


def one_directory_by_pattern(uri_lines: str) -> str | None:
    """What `_one_absolute_directory` means, by its regular expression alone: the oracle its
    whole-text shortcut is held to."""
    directory = _CDN
    marker = "\n" + directory
    if uri_lines.count(marker) != uri_lines.count("\n") or "/." in uri_lines or "#" in uri_lines:
        return None
    return directory if _FLAT_NAMES.fullmatch(uri_lines.replace(marker, "\n")) else None


@settings(max_examples=500, deadline=None)
@given(names=_ODD_NAMES, ending=_ENDINGS)
@example(names=["c", "a/b"], ending="\n")
@example(names=["c", "?q"], ending="\n")
@example(names=["c", ""], ending="\n")
@example(names=["c", "d"], ending="\r\n")
@example(names=["c", "d?x=/y"], ending="\n")
@example(names=["c", "d{"], ending="\n")
@example(names=["c", "d\x1f"], ending="\n")
@example(names=["c", "d\u00e9"], ending="\n")
def test_the_one_directory_shortcut_agrees_with_its_regular_expression(names, ending):
    cr = "\r" if ending == "\r\n" else ""
    uri_lines = "".join(f"\n{_CDN}{name}{cr}" for name in ["seg.ts", *names])
    assert _one_absolute_directory(uri_lines) == one_directory_by_pattern(uri_lines)


@settings(max_examples=300, deadline=None)
@given(
    names=_ODD_NAMES,
    keep=st.sampled_from(
        [
            None,
            "https://other.example/vod/",
            "https://origin.example/vod/title/sub/",
            "https://origin.example/vod/",  # the playlist's own directory is kept
        ]
    ),
    tags=st.booleans(),
    ending=_ENDINGS,
)
def test_flat_names_not_kept_rewrite_the_same_in_one_pass_as_line_by_line(
    names, keep, tags, ending
):
    with_uris = ['#EXT-X-KEY:METHOD=AES-128,URI="k/1.key"', '#EXT-X-MAP:URI="init.mp4"']
    body = vod_playlist(names, with_uris if tags else [], ending)
    base = "https://origin.example/vod/title/index.m3u8"
    line_by_line = _Rewriter(base, keep, ref).every_line(body.decode())
    expected = body if line_by_line is None else line_by_line.encode()
    assert rewrite(body, base_url=base, keep_relative_inside=keep, make_ref=ref) == expected


@settings(max_examples=300, deadline=None)
@given(
    names=_ODD_NAMES,
    keep=st.sampled_from([None, "https://other.example/vod/"]),
    base=st.sampled_from(
        [
            "https://origin.example/vod/title/index.m3u8",
            "https://origin.example/vod/$title$/index.m3u8",  # a directory refs split apart
        ]
    ),
    tags=st.booleans(),
    ending=_ENDINGS,
)
def test_flat_names_not_kept_rewrite_with_one_prefix_as_line_by_line(
    names, keep, base, tags, ending
):
    with_uris = ['#EXT-X-KEY:METHOD=AES-128,URI="k/1.key"', '#EXT-X-MAP:URI="init.mp4"']
    body = vod_playlist(names, with_uris if tags else [], ending)

    def refs() -> RefMaker:
        return RefMaker(Signer(b"test-secret-0123456789"), Grant("https://origin.example/"), "../")

    line_by_line = _Rewriter(base, keep, refs()).every_line(body.decode())
    expected = body if line_by_line is None else line_by_line.encode()
    one_pass = refs()
    got = rewrite(
        body,
        base_url=base,
        keep_relative_inside=keep,
        make_ref=one_pass,
        directory_ref=one_pass.directory,
    )
    assert got == expected


# --- corpus --------------------------------------------------------------------------------

_CORPUS_FILES = sorted(CORPUS.glob("*.m3u8")) if CORPUS.is_dir() else []
_MALFORMED_FILES = sorted((CORPUS / "malformed").glob("*")) if CORPUS.is_dir() else []
_QUOTED = re.compile(r'("[^"\r\n]*")')
_DEFINE = re.compile(r'#EXT-X-DEFINE:NAME="([^"]*)",VALUE="([^"]*)"')


def _substitute(text: str, variables: dict[str, str]) -> str | None:
    for name, value in variables.items():
        text = text.replace("{$" + name + "}", value)
    return None if "{$" in text else text


def _check_rewritten_value(old: str, new: str, variables: dict[str, str]) -> None:
    meant = _substitute(old, variables)
    assert meant is not None, f"URI with an unknown variable was rewritten: {old!r}"
    assert new == ref(resolve(BASE, meant))


@pytest.mark.parametrize("path", _CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_playlists_rewrite_only_their_uris(path):
    body = path.read_bytes()
    assert is_playlist(body)  # a comment line before #EXTM3U is tolerated, as players do
    out = rewrite(body, base_url=BASE, keep_relative_inside=None, make_ref=ref)
    variables = dict(_DEFINE.findall(body.decode()))
    old_lines = body.decode().split("\n")
    new_lines = out.decode().split("\n")
    assert len(new_lines) == len(old_lines)
    for old, new in zip(old_lines, new_lines, strict=True):
        stripped = old.strip()
        if not stripped.startswith("#") and stripped:
            meant = _substitute(stripped, variables)
            if meant is None or not resolve(BASE, meant).lower().startswith("http"):
                assert new == old
            else:
                assert new == old.replace(stripped, ref(resolve(BASE, meant)), 1)
            continue
        if new == old:
            continue
        assert old.lstrip().startswith("#EXT")
        old_parts = _QUOTED.split(old)
        new_parts = _QUOTED.split(new)
        assert len(old_parts) == len(new_parts)
        for index, (a, b) in enumerate(zip(old_parts, new_parts, strict=True)):
            if a == b:
                continue
            assert index % 2 == 1, f"text outside quoted values changed: {a!r} -> {b!r}"
            assert old_parts[index - 1].endswith(("URI=", "URL=", "X-ASSET-LIST="))
            _check_rewritten_value(a[1:-1], b[1:-1], variables)


@pytest.mark.parametrize("path", _CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_playlists_inside_their_directory_change_no_relative_uri(path):
    body = path.read_bytes()
    if not is_playlist(body):
        return
    out = rewrite(body, base_url=BASE, keep_relative_inside=DIRECTORY, make_ref=ref)
    for old, new in zip(body.split(b"\n"), out.split(b"\n"), strict=True):
        if old != new:
            assert b"REF(" in new
    assert inspect(body) == inspect(out)


@pytest.mark.parametrize("path", _MALFORMED_FILES, ids=lambda p: p.name)
def test_malformed_playlists_rewrite_or_raise_playlist_error(path):
    body = path.read_bytes()
    try:
        out = rewrite(body, base_url=BASE, keep_relative_inside=None, make_ref=ref)
    except PlaylistError:
        return
    assert out.count(b"\n") == body.count(b"\n")
    inspect(body)


def _uris_found(out: bytes) -> int:
    return sum(1 for line in out.split(b"\n") if line.strip().startswith(b"REF("))


@pytest.mark.parametrize("path", _CORPUS_FILES, ids=lambda p: p.name)
def test_the_uris_found_match_what_the_m3u8_package_parses(path):
    body = path.read_bytes()
    if not is_playlist(body):
        return
    text = body.decode("utf-8-sig")
    parsed = m3u8.loads(text, uri=BASE)
    variables = dict(_DEFINE.findall(text))
    out = rewrite(body, base_url=BASE, keep_relative_inside=None, make_ref=ref)
    # m3u8 also lists a trailing segment still without its URI line (LL-HLS parts, a cut-off
    # EXTINF), and does not substitute variables itself.
    uri_lines = [
        item.uri
        for item in [*parsed.segments, *parsed.playlists]
        if item.uri and _substitute(item.uri, variables) is not None
    ]
    assert _uris_found(out) == len(uri_lines)
    out_lines = out.decode("utf-8-sig").split("\n")
    media_refs = sum(
        line.count('URI="REF(') for line in out_lines if line.startswith("#EXT-X-MEDIA:")
    )
    assert media_refs == sum(1 for item in parsed.media if item.uri)
    # m3u8 keeps one Key per distinct key, so compare the sets.
    key_refs = {
        value
        for line in out_lines
        if line.startswith("#EXT-X-KEY:")
        for value in re.findall(r'URI="REF\(([^"]*)\)"', line)
    }
    expected_keys = {
        resolve(BASE, key.uri)
        for key in parsed.keys
        if key is not None and key.uri and resolve(BASE, key.uri).startswith("http")
    }
    assert key_refs == expected_keys


@settings(max_examples=200, deadline=None)
@given(segments=_SEGMENTS, crlf=st.booleans())
def test_the_whole_text_shortcut_agrees_with_the_line_by_line_rewrite(segments, crlf):
    # A `{$` anywhere sends the rewrite down the line-by-line path; a comment holding one
    # changes nothing else, so both paths must produce the same lines.
    ending = "\r\n" if crlf else "\n"
    lines = ["#EXTM3U"]
    for extra, before, uri, after in segments:
        lines += ["#EXTINF:4,", *extra, before + uri + after]
    body = ending.join(lines).encode()
    marker = (ending + "# {$unused}").encode()
    fast = rewrite(body, base_url=BASE, keep_relative_inside=DIRECTORY, make_ref=ref)
    slow = rewrite(body + marker, base_url=BASE, keep_relative_inside=DIRECTORY, make_ref=ref)
    assert slow == fast + marker
