"""Whatever bytes an upstream sends where a playlist is expected, the rewriters either return a
playlist or raise PlaylistError (a one-line 502), never anything else; and a rewritten HLS
playlist keeps every line that carries no URI byte for byte."""

import hashlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playlists import dash, hls
from playlists.errors import PlaylistError
from tests.support.corpus import CORPUS

HLS_FILES = sorted((CORPUS / "hls").glob("*.m3u8"))
DASH_FILES = sorted((CORPUS / "dash").glob("*.mpd"))
BASE = "https://cdn.example.com/vod/title/index.m3u8"
INSIDE = "https://cdn.example.com/vod/title/"

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # no example files left in the working tree
)


def make_ref(url: str) -> str:
    return "../T" + hashlib.sha1(url.encode("utf-8", "surrogatepass")).hexdigest()[:12] + "/x"


def rewrite_hls(body: bytes) -> bytes:
    return hls.rewrite(body, base_url=BASE, keep_relative_inside=INSIDE, make_ref=make_ref)


def rewrite_dash(body: bytes) -> bytes:
    return dash.rewrite_mpd(
        body,
        base_url=BASE.replace("index.m3u8", "manifest.mpd"),
        keep_relative_inside=INSIDE,
        make_ref=make_ref,
        max_bytes=1024 * 1024,
    )


# -- mutations of real playlists --------------------------------------------------------------


@st.composite
def mutated(draw, files: list[Path]) -> bytes:
    body = files[draw(st.integers(0, len(files) - 1))].read_bytes()
    for _ in range(draw(st.integers(1, 4))):
        lines = body.split(b"\n")
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        kind = draw(
            st.sampled_from(
                [
                    "delete line",
                    "duplicate line",
                    "insert line",
                    "insert bytes",
                    "delete bytes",
                    "swap lines",
                ]
            )
        )
        if kind == "delete line" and len(lines) > 1:
            del lines[at]
        elif kind == "duplicate line":
            lines.insert(at, lines[at])
        elif kind == "insert line":
            lines.insert(at, draw(st.binary(max_size=80)).replace(b"\n", b""))
        elif kind == "swap lines":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        body = b"\n".join(lines)
        if kind == "insert bytes":
            cut = draw(st.integers(0, len(body)))
            body = body[:cut] + draw(st.binary(min_size=1, max_size=16)) + body[cut:]
        elif kind == "delete bytes" and body:
            cut = draw(st.integers(0, len(body) - 1))
            body = body[:cut] + body[cut + draw(st.integers(1, 32)) :]
    return body


def carries_a_uri(line: bytes) -> bool:
    text = line.strip()
    if not text:
        return False
    if not text.startswith(b"#"):
        return True  # a URI line
    return any(marker in text for marker in (b"URI=", b"URL=", b"X-ASSET-LIST="))


def assert_hls_property(body: bytes) -> None:
    try:
        out = rewrite_hls(body)
    except PlaylistError:
        return
    before, after = body.split(b"\n"), out.split(b"\n")
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        if not carries_a_uri(old):
            assert new == old


# -- HLS --------------------------------------------------------------------------------------


@PROPERTY
@given(st.binary(max_size=2048))
def test_hls_arbitrary_bytes_rewrite_or_raise_playlist_error(body):
    assert_hls_property(body)


@PROPERTY
@given(st.binary(max_size=2048))
def test_hls_arbitrary_bytes_after_a_valid_header(body):
    assert_hls_property(b"#EXTM3U\n" + body)


@PROPERTY
@given(st.lists(st.text(max_size=60).map(lambda t: t.replace("\n", "")), max_size=30))
def test_hls_arbitrary_text_lines_keep_their_shape(lines):
    assert_hls_property(("#EXTM3U\n" + "\n".join(lines)).encode("utf-8", "surrogatepass"))


@PROPERTY
@given(st.data())
def test_hls_mutated_corpus_rewrite_or_raise_playlist_error(data):
    assert_hls_property(data.draw(mutated(HLS_FILES)))


def test_the_hls_corpus_itself_rewrites_with_every_uri_free_line_kept():
    for path in HLS_FILES:
        assert_hls_property(path.read_bytes())


# -- DASH -------------------------------------------------------------------------------------


def assert_only_playlist_errors(body: bytes) -> None:
    try:
        out = rewrite_dash(body)
    except PlaylistError:
        return
    assert isinstance(out, bytes)


@PROPERTY
@given(st.binary(max_size=2048))
def test_dash_arbitrary_bytes_rewrite_or_raise_playlist_error(body):
    assert_only_playlist_errors(body)


@PROPERTY
@given(st.binary(max_size=1024))
def test_dash_arbitrary_bytes_inside_an_mpd_root(body):
    assert_only_playlist_errors(
        b"<?xml version='1.0'?><MPD xmlns='urn:mpeg:dash:schema:mpd:2011'>" + body + b"</MPD>"
    )


@PROPERTY
@given(st.data())
def test_dash_mutated_corpus_rewrite_or_raise_playlist_error(data):
    assert_only_playlist_errors(data.draw(mutated(DASH_FILES)))
