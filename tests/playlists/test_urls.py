"""URL arithmetic: RFC 3986 resolution on raw text, and the checks that keep a path inside."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from playlists.errors import PathEscapeError
from playlists.urls import directory_of, inside, is_http_url, normalize_rest, resolve

BASE = "http://a/b/c/d;p?q"

# RFC 3986 §5.4.1 and §5.4.2, verbatim.
RFC_EXAMPLES = [
    ("g:h", "g:h"),
    ("g", "http://a/b/c/g"),
    ("./g", "http://a/b/c/g"),
    ("g/", "http://a/b/c/g/"),
    ("/g", "http://a/g"),
    ("//g", "http://g"),
    ("?y", "http://a/b/c/d;p?y"),
    ("g?y", "http://a/b/c/g?y"),
    ("#s", "http://a/b/c/d;p?q#s"),
    ("g#s", "http://a/b/c/g#s"),
    ("g?y#s", "http://a/b/c/g?y#s"),
    (";x", "http://a/b/c/;x"),
    ("g;x", "http://a/b/c/g;x"),
    ("", "http://a/b/c/d;p?q"),
    (".", "http://a/b/c/"),
    ("./", "http://a/b/c/"),
    ("..", "http://a/b/"),
    ("../", "http://a/b/"),
    ("../g", "http://a/b/g"),
    ("../..", "http://a/"),
    ("../../", "http://a/"),
    ("../../g", "http://a/g"),
    ("../../../g", "http://a/g"),
    ("../../../../g", "http://a/g"),
    ("/./g", "http://a/g"),
    ("/../g", "http://a/g"),
    ("g.", "http://a/b/c/g."),
    (".g", "http://a/b/c/.g"),
    ("g..", "http://a/b/c/g.."),
    ("..g", "http://a/b/c/..g"),
    ("./../g", "http://a/b/g"),
    ("./g/.", "http://a/b/c/g/"),
    ("g/./h", "http://a/b/c/g/h"),
    ("g/../h", "http://a/b/c/h"),
    ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
    ("g;x=1/../y", "http://a/b/c/y"),
    ("g?y/./x", "http://a/b/c/g?y/./x"),
    ("g?y/../x", "http://a/b/c/g?y/../x"),
    ("g#s/./x", "http://a/b/c/g#s/./x"),
    ("g#s/../x", "http://a/b/c/g#s/../x"),
    ("http:g", "http:g"),
]


@pytest.mark.parametrize(("reference", "expected"), RFC_EXAMPLES)
def test_resolution_follows_rfc_3986(reference, expected):
    assert resolve(BASE, reference) == expected


def test_resolution_never_re_encodes_what_signed_urls_carry():
    base = "https://cdn.example/v/a%2Fb/index.m3u8?token=x%3D%3D&exp=1"
    assert (
        resolve(base, "seg%2F1.ts?sig=ab%2Bcd%3D")
        == "https://cdn.example/v/a%2Fb/seg%2F1.ts?sig=ab%2Bcd%3D"
    )


def test_protocol_relative_references_take_the_playlist_scheme():
    assert resolve("https://a.example/x/i.m3u8", "//b.example/s.ts") == "https://b.example/s.ts"


@pytest.mark.parametrize(
    ("url", "directory"),
    [
        ("http://a/b/c.m3u8?x=1", "http://a/b/"),
        ("http://a", "http://a/"),
        ("http://a?x", "http://a/"),
        ("http://a/b/", "http://a/b/"),
        ("http://a/b/c#frag/x", "http://a/b/"),
    ],
)
def test_the_directory_of_a_url_ends_at_its_last_slash(url, directory):
    assert directory_of(url) == directory


@pytest.mark.parametrize(
    "rest",
    [
        "../x.ts",
        "a/../../x.ts",
        "%2e%2e/x.ts",
        "%2E%2e/x",
        "..%2fx.ts",
        "..%5cx.ts",
        "a/..\\..\\x",
        "%252e%252e/x.ts",
        "x%00.ts",
        "/etc/passwd",
        "%2fetc/passwd",
        "..",
        "a/../..",
        "a/%2e/b",
    ],
)
def test_rest_paths_that_could_climb_out_are_refused(rest):
    with pytest.raises(PathEscapeError):
        normalize_rest(rest)


@pytest.mark.parametrize("rest", ["seg.ts", "a/b/seg.ts?x=../y", "a%2Fb.ts", "..seg.ts", "seg..ts"])
def test_ordinary_rest_paths_pass_unchanged(rest):
    assert normalize_rest(rest) == rest.split("?", 1)[0]


@pytest.mark.parametrize(
    ("rest", "normal"),
    [("./x/../seg.ts", "seg.ts"), ("a/./b.ts", "a/b.ts"), ("a/b/../c.ts", "a/c.ts")],
)
def test_dot_segments_that_stay_inside_are_resolved(rest, normal):
    assert normalize_rest(rest) == normal


def test_inside_means_under_the_directory_without_dot_segments():
    assert inside("http://a/b/", "http://a/b/c/d.ts")
    assert not inside("http://a/b/", "http://a/bc/d.ts")
    assert not inside("http://a/b/", "http://a/b/%2e%2e/d.ts")
    assert inside("http://a/b/", "http://a/b/d.ts?x=/../../")


def test_only_http_urls_with_a_host_are_upstreams():
    assert is_http_url("https://a.example/x.m3u8")
    assert not is_http_url("file:///etc/passwd")
    assert not is_http_url("http:///x")
    assert not is_http_url("http://a.example/x y")


segment = st.text(alphabet="abcxyz.%2Fe-_", min_size=1, max_size=6)


@given(st.lists(segment, min_size=1, max_size=5))
def test_a_rest_that_passes_stays_inside_its_directory(parts):
    rest = "/".join(parts)
    try:
        normalize_rest(rest)
    except PathEscapeError:
        return
    assert resolve("http://h/d/", rest).startswith("http://h/d/")
