"""The token scheme: sealed, deterministic, tamper-evident grants."""

import base64
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.links import split_upstream
from gateway.signing import (
    Grant,
    HeaderError,
    Signer,
    TokenError,
    TokenExpired,
    parse_header_line,
    validate_headers,
)
from playlists.urls import directory_of

SECRET = b"k" * 32
GRANT = Grant(
    "https://cdn.example.com/live/",
    (("Referer", "https://site.example/"), ("Cookie", "session=s3cr3t-cookie")),
    None,
)


def test_a_minted_token_verifies_to_the_same_grant():
    signer = Signer(SECRET)
    assert signer.verify(signer.mint(GRANT)) == GRANT


def test_tokens_are_deterministic_so_segment_urls_stay_stable():
    assert Signer(SECRET).mint(GRANT) == Signer(SECRET).mint(GRANT)


def test_the_upstream_and_bound_credentials_are_not_readable_from_the_token():
    token = Signer(SECRET).mint(GRANT)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for secret_text in (b"cdn.example.com", b"s3cr3t-cookie", b"site.example"):
        assert secret_text not in raw


@pytest.mark.parametrize("position", [0, 1, 5, 20, -1])
def test_any_changed_character_is_rejected(position):
    signer = Signer(SECRET)
    token = signer.mint(GRANT)
    index = position % len(token)
    swapped = "A" if token[index] != "A" else "B"
    with pytest.raises(TokenError):
        signer.verify(token[:index] + swapped + token[index + 1 :])


def test_truncated_and_garbage_tokens_are_rejected():
    signer = Signer(SECRET)
    token = signer.mint(GRANT)
    for bad in (token[:-3], token[:10], "", "not a token!", "A" * 40, token + "=="):
        with pytest.raises(TokenError):
            signer.verify(bad)


def test_a_token_from_another_secret_is_rejected():
    with pytest.raises(TokenError):
        Signer(b"x" * 32).verify(Signer(SECRET).mint(GRANT))


def test_previous_secrets_still_verify_during_rotation():
    old = Signer(b"old-secret-0123456789")
    rotated = Signer(SECRET, previous=[b"old-secret-0123456789"])
    assert rotated.verify(old.mint(GRANT)) == GRANT


def test_expired_tokens_raise_expired_and_fresh_ones_pass():
    signer = Signer(SECRET)
    token = signer.mint(Grant("https://h/", (), int(time.time()) + 60))
    signer.verify(token)
    with pytest.raises(TokenExpired):
        signer.verify(token, now=time.time() + 61)


def test_child_grants_inherit_headers_and_expiry():
    parent = Grant("https://a/x/", (("Referer", "r"),), 123)
    assert parent.child("https://b/y/") == Grant("https://b/y/", (("Referer", "r"),), 123)


def test_long_cookies_are_compressed_into_a_shorter_token():
    signer = Signer(SECRET)
    long_grant = Grant("https://h/", (("Cookie", "a=" + "x" * 2000),), None)
    token = signer.mint(long_grant)
    assert len(token) < 1000
    assert signer.verify(token) == long_grant


@pytest.mark.parametrize(
    "pair",
    [
        ("Host", "evil"),
        ("Transfer-Encoding", "chunked"),
        ("Referer", "a\r\nX: y"),
        ("Bad Name", "v"),
    ],
)
def test_headers_that_could_smuggle_requests_are_refused(pair):
    with pytest.raises(HeaderError):
        validate_headers([pair])


def test_header_lines_parse_like_curl():
    assert parse_header_line("Referer: https://site.example/") == (
        "Referer",
        "https://site.example/",
    )
    with pytest.raises(HeaderError):
        parse_header_line("no colon here")


def test_a_token_has_exactly_one_spelling():
    """Unused low bits in a base64 tail must not give a second valid spelling of a token."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    signer = Signer(SECRET)
    for n in range(8):  # a few lengths, so that both 2- and 3-character tails occur
        token = signer.mint(Grant(f"https://cdn.example.com/{'x' * n}/"))
        if len(token) % 4 == 0:
            continue
        last = alphabet.index(token[-1])
        spare_bits = 4 if len(token) % 4 == 2 else 2
        for low in range(1, 1 << spare_bits):
            respelled = token[:-1] + alphabet[last ^ low]
            assert base64.urlsafe_b64decode(respelled + "=" * (-len(respelled) % 4)) == (
                base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            )
            with pytest.raises(TokenError):
                signer.verify(respelled)


_URL_PARTS = st.sampled_from(
    ["a", "b.ts", "", ".", "..", "%2F", "$Number$", "x?y=/z", "#f", "?", "/"]
)


@given(
    st.sampled_from(["https://", "http://", "HTTPS://", "https:///"]),
    st.sampled_from(["cdn.example.com", "h:8080", "[::1]", ""]),
    st.lists(_URL_PARTS, max_size=6),
)
def test_splitting_an_upstream_url_agrees_with_rfc3986_parsing(scheme, host, parts):
    url = scheme + host + "/".join(["", *parts]) if parts else scheme + host
    cut = url.find("$")
    directory = directory_of(url[:cut] if cut >= 0 else url)
    assert split_upstream(url) == (directory, url[len(directory) :])
