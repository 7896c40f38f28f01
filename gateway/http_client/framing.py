"""An HTTP/1.1 answer's head, how its body is delimited, and the body's decoding: bytes in,
values out, no I/O."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import Enum

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.http_client.errors import ResponseError

MAX_HEAD_BYTES = 64 * 1024
_MAX_CHUNK_LINE = 4096
_HEX_DIGITS = b"0123456789abcdefABCDEF"


class Delimited(Enum):
    """How an answer's body ends."""

    LENGTH = "Content-Length"
    CHUNKED = "chunked"
    CLOSE = "the connection's end"
    EMPTY = "no body"


@dataclass(frozen=True, slots=True)
class Head:
    version: str  # "1.1" or "1.0"
    status: int
    reason: str
    headers: CIMultiDictProxy[str]

    @property
    def interim(self) -> bool:
        """A 1xx answer (100 Continue, 103 Early Hints): the real one follows."""
        return 100 <= self.status < 200


@dataclass(frozen=True, slots=True)
class Body:
    delimited: Delimited
    length: int = 0  # for Delimited.LENGTH
    reusable: bool = True  # whether the connection can carry another request afterwards


def parse_head(head: bytes) -> Head:
    """The status line and header fields of `head` (without its final empty line)."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise ResponseError("malformed upstream status line")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name:
            raise ResponseError("malformed upstream header line")
        headers.add(name, value.strip(" \t"))
    return Head(version[5:], int(code), reason, CIMultiDictProxy(headers))


def body_of(head: Head, *, tunnel: bool = False) -> Body:
    """How the body of the answer `head` is delimited (RFC 9112 section 6.3). `tunnel`: the
    answer to a CONNECT, which has none."""
    headers = head.headers
    connection = ",".join(headers.getall("Connection", ())).lower()
    # HTTP/1.0 closes unless asked to keep alive; HTTP/1.1 keeps alive unless told to close.
    reusable = "keep-alive" in connection if head.version == "1.0" else "close" not in connection
    if tunnel or head.status in (204, 304):
        return Body(Delimited.EMPTY, reusable=reusable)
    encodings = ",".join(headers.getall("Transfer-Encoding", ())).lower()
    if encodings:
        if encodings.rsplit(",", 1)[-1].strip() != "chunked":
            raise ResponseError("unsupported upstream transfer encoding")
        return Body(Delimited.CHUNKED, reusable=reusable)
    lengths = {value.strip() for value in headers.getall("Content-Length", ())}
    if len(lengths) > 1:
        raise ResponseError("conflicting upstream Content-Length")
    if lengths:
        value = lengths.pop()
        if not value.isdigit():
            raise ResponseError("malformed upstream Content-Length")
        length = int(value)
        return Body(Delimited.LENGTH if length else Delimited.EMPTY, length, reusable)
    return Body(Delimited.CLOSE, reusable=False)


class _Chunk(Enum):
    SIZE = 1
    DATA = 2
    DATA_END = 3
    TRAILERS = 4


class ChunkedDecoder:
    """Takes a chunked body in pieces as they arrive and hands out its data."""

    def __init__(self) -> None:
        self._state = _Chunk.SIZE
        self._remaining = 0
        self._line = b""
        self.done = False

    def feed(self, data: bytes, out: list[bytes]) -> bool:
        """Append the data `data` carries to `out`; False if bytes follow the body's end."""
        position, size = 0, len(data)
        while position < size and not self.done:
            if self._state is _Chunk.DATA:
                take = min(self._remaining, size - position)
                out.append(data if take == size else data[position : position + take])
                position += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _Chunk.DATA_END
                continue
            end = data.find(b"\n", position)
            if end < 0:
                self._line += data[position:]
                if len(self._line) > _MAX_CHUNK_LINE:
                    raise ResponseError("malformed upstream chunk")
                return True
            line = self._line + data[position:end]
            self._line = b""
            position = end + 1
            self._take_line(line[:-1] if line.endswith(b"\r") else line)
        return position == size

    def _take_line(self, line: bytes) -> None:
        if self._state is _Chunk.SIZE:
            text = line.split(b";", 1)[0].rstrip(b" \t")  # chunk extensions are ignored
            if not text or text.translate(None, _HEX_DIGITS):
                raise ResponseError("malformed upstream chunk size")
            self._remaining = int(text, 16)
            self._state = _Chunk.DATA if self._remaining else _Chunk.TRAILERS
        elif self._state is _Chunk.DATA_END:
            if line:
                raise ResponseError("malformed upstream chunk end")
            self._state = _Chunk.SIZE
        elif not line:  # the empty line after the trailers, which are ignored
            self.done = True


class ContentDecoder:
    """Undoes a gzip or deflate Content-Encoding, piece by piece."""

    def __init__(self, wbits: int | None) -> None:
        """`wbits` None: deflate, with or without the zlib wrapper its name promises (many
        servers send it raw); the first two bytes tell which."""
        self._inflate = zlib.decompressobj(wbits) if wbits is not None else None
        self._start = b""
        self._started = False

    def decode(self, data: bytes | memoryview) -> bytes:
        if self._inflate is None:
            data = self._start + bytes(data)
            if len(data) < 2:
                self._start = data
                return b""
            self._start = b""
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        try:
            out = self._inflate.decompress(data)
        except zlib.error:
            raise ResponseError("upstream body is not valid compressed data") from None
        self._started = True
        return out

    def finish(self) -> bytes:
        if self._inflate is None:
            if self._start:
                raise ResponseError("upstream compressed body ends early")
            return b""
        try:
            tail = self._inflate.flush()
        except zlib.error:
            raise ResponseError("upstream body is not valid compressed data") from None
        if self._started and not self._inflate.eof:
            raise ResponseError("upstream compressed body ends early")
        return tail


def content_decoder(encoding: str) -> ContentDecoder | None:
    """The decoder for a Content-Encoding; None for identity, and for an encoding that was
    not asked for, which is passed on as it is."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return ContentDecoder(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return ContentDecoder(None)
    return None
