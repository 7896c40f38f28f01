"""An answer's head, how its body ends and how it is decoded, on bytes alone: whatever
pieces the network cuts a body into, the same data comes out."""

from __future__ import annotations

import gzip
import zlib

import pytest

from gateway.http_client.errors import ResponseError
from gateway.http_client.framing import (
    ChunkedDecoder,
    Delimited,
    body_of,
    content_decoder,
    parse_head,
)

CHUNKED = (
    b"5;name=value\r\nhello\r\n1A\r\n abcdefghijklmnopqrstuvwxy\r\n0\r\nX-Trailer: yes\r\n\r\n"
)
DATA = b"hello abcdefghijklmnopqrstuvwxy"


def decode_chunked(pieces: list[bytes]) -> tuple[bytes, bool, bool]:
    """The data, whether the body ended, and whether every byte fed belonged to it."""
    decoder = ChunkedDecoder()
    out: list[bytes] = []
    whole = all([decoder.feed(piece, out) for piece in pieces])
    return b"".join(out), decoder.done, whole


@pytest.mark.parametrize("cut", range(1, len(CHUNKED)))
def test_a_chunked_body_cut_anywhere_decodes_the_same(cut):
    assert decode_chunked([CHUNKED[:cut], CHUNKED[cut:]]) == (DATA, True, True)


def test_a_chunked_body_fed_a_byte_at_a_time_decodes_the_same():
    assert decode_chunked([CHUNKED[i : i + 1] for i in range(len(CHUNKED))]) == (
        DATA,
        True,
        True,
    )


def test_bytes_after_the_last_chunk_are_reported():
    assert decode_chunked([CHUNKED + b"HTTP/1.1 200 OK\r\n"]) == (DATA, True, False)


def test_a_chunked_body_without_its_last_chunk_has_not_ended():
    assert decode_chunked([CHUNKED[:30]])[1] is False


@pytest.mark.parametrize(
    "size_line", [b"", b"x", b"1_0", b"+5", b"-5", b"0x5", b" 5", b"5 5", b"\xff"]
)
def test_a_chunk_size_that_is_not_hex_digits_is_refused(size_line):
    with pytest.raises(ResponseError):
        decode_chunked([size_line + b"\r\nhello\r\n0\r\n\r\n"])


def test_chunk_data_must_end_with_a_line_end():
    with pytest.raises(ResponseError):
        decode_chunked([b"5\r\nhelloX\r\n0\r\n\r\n"])


def test_an_endless_chunk_size_line_is_refused():
    with pytest.raises(ResponseError):
        decode_chunked([b"5" * 5000])


def head(text: str):
    return parse_head(text.replace("\n", "\r\n").encode("latin-1"))


@pytest.mark.parametrize(
    ("text", "delimited", "length", "reusable"),
    [
        ("HTTP/1.1 200 OK\nContent-Length: 12", Delimited.LENGTH, 12, True),
        ("HTTP/1.1 200 OK\nContent-Length: 0", Delimited.EMPTY, 0, True),
        ("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", Delimited.CHUNKED, 0, True),
        # Transfer-Encoding wins over a Content-Length beside it (RFC 9112 6.3).
        (
            "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nContent-Length: 5",
            Delimited.CHUNKED,
            0,
            True,
        ),
        ("HTTP/1.1 200 OK", Delimited.CLOSE, 0, False),
        ("HTTP/1.1 200 OK\nContent-Length: 3\nConnection: close", Delimited.LENGTH, 3, False),
        ("HTTP/1.0 200 OK\nContent-Length: 3", Delimited.LENGTH, 3, False),
        ("HTTP/1.0 200 OK\nContent-Length: 3\nConnection: Keep-Alive", Delimited.LENGTH, 3, True),
        ("HTTP/1.1 304 Not Modified\nContent-Length: 99", Delimited.EMPTY, 0, True),
        ("HTTP/1.1 204 No Content", Delimited.EMPTY, 0, True),
        ("HTTP/1.1 200 OK\nContent-Length: 7\nContent-Length: 7", Delimited.LENGTH, 7, True),
    ],
)
def test_how_a_body_ends(text, delimited, length, reusable):
    body = body_of(head(text))
    assert (body.delimited, body.length, body.reusable) == (delimited, length, reusable)


def test_the_answer_to_connect_has_no_body():
    assert body_of(head("HTTP/1.1 200 OK\nContent-Length: 5"), tunnel=True).delimited is (
        Delimited.EMPTY
    )


@pytest.mark.parametrize(
    "text",
    [
        "HTTP/1.1 200 OK\nContent-Length: 5\nContent-Length: 6",
        "HTTP/1.1 200 OK\nContent-Length: -1",
        "HTTP/1.1 200 OK\nContent-Length: 1e3",
        "HTTP/1.1 200 OK\nTransfer-Encoding: gzip",
    ],
)
def test_a_body_whose_end_cannot_be_known_is_refused(text):
    with pytest.raises(ResponseError):
        body_of(head(text))


def test_a_head_is_read_field_by_field():
    parsed = head("HTTP/1.1 206 Partial Content\nContent-Range: bytes 0-9/20\nX-A: 1\nx-a: 2")
    assert (parsed.version, parsed.status, parsed.reason) == ("1.1", 206, "Partial Content")
    assert parsed.headers["content-range"] == "bytes 0-9/20"
    assert parsed.headers.getall("X-A") == ["1", "2"]
    assert not parsed.interim and head("HTTP/1.1 103 Early Hints").interim


@pytest.mark.parametrize(
    "text",
    [
        "HTTP/2 200 OK",
        "HTTP/1.1 20 OK",
        "HTTP/1.1 abc OK",
        "ICY 200 OK",
        "HTTP/1.1 200 OK\nno colon here",
        "HTTP/1.1 200 OK\nName : value",
        "HTTP/1.1 200 OK\n folded: value",
    ],
)
def test_a_malformed_head_is_refused(text):
    with pytest.raises(ResponseError):
        head(text)


PLAIN = b"#EXTM3U\n" + b"#EXTINF:4,\nsegment.ts\n" * 500


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(PLAIN)),
        ("x-gzip", gzip.compress(PLAIN)),
        ("deflate", zlib.compress(PLAIN)),
        ("deflate", zlib.compress(PLAIN, wbits=-zlib.MAX_WBITS)),  # sent raw, as many do
    ],
)
def test_a_compressed_body_decodes_whatever_its_pieces(encoding, encoded):
    for size in (1, 7, 1000, len(encoded)):
        decoder = content_decoder(encoding)
        assert decoder is not None
        pieces = [decoder.decode(encoded[i : i + size]) for i in range(0, len(encoded), size)]
        assert b"".join(pieces) + decoder.finish() == PLAIN


def test_a_compressed_body_cut_short_is_refused():
    decoder = content_decoder("gzip")
    assert decoder is not None
    decoder.decode(gzip.compress(PLAIN)[:-20])
    with pytest.raises(ResponseError):
        decoder.finish()


def test_identity_and_encodings_not_asked_for_pass_through():
    assert content_decoder("") is None
    assert content_decoder("identity") is None
    assert content_decoder("br") is None
