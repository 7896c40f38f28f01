"""The one token scheme: a sealed, deterministic grant for an upstream directory.

A token is `base64url(version | tag | ciphertext)`:

- `tag = HMAC-SHA256(mac_key, version | plaintext)[:16]` authenticates the grant (128-bit tag,
  compared in constant time);
- `ciphertext = plaintext XOR HMAC-SHA256-CTR(enc_key, tag)` hides it, so neither the upstream
  host nor a bound Cookie or Authorization header is readable from a URL.

Using the tag as the keystream's IV (the SIV construction) makes tokens deterministic: the same
grant always yields the same token, so segment URLs stay stable for CDNs and caches in front.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cachetools import LRUCache

_VERSION = 1
_FLAG_DEFLATE = 0x80
_TAG_BYTES = 16
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{24,8192}$")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")

# Headers the gateway controls itself; a grant may not smuggle them upstream.
_FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "range",
        "if-range",
        "accept-encoding",
        "expect",
    }
)


class TokenError(Exception):
    """A token that is malformed, forged or tampered with."""


class TokenExpired(TokenError):
    """A genuine token past its expiry."""


class HeaderError(ValueError):
    """A header that may not be bound into a grant."""


Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission to fetch anything under `directory` with `headers`, until `expires`."""

    directory: str
    headers: Headers = ()
    expires: int | None = None
    # "" grants a directory to proxy; "hls" grants one source file (`directory` is its full
    # URL) to be served as HLS by segmenting it.
    mode: str = ""

    def child(self, directory: str) -> Grant:
        """A directory grant that inherits headers and expiry (deterministic)."""
        return Grant(directory, self.headers, self.expires)


def validate_headers(pairs: Iterable[tuple[str, str]]) -> Headers:
    """Check header names/values before they can ever be sent upstream."""
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        name = name.strip()
        if not _HEADER_NAME_RE.match(name):
            raise HeaderError(f"invalid header name {name!r}")
        if name.lower() in _FORBIDDEN_HEADERS or name.lower().startswith("proxy-"):
            raise HeaderError(f"header {name} cannot be bound")
        if any(ch in value for ch in "\r\n\x00"):
            raise HeaderError(f"header {name} has a control character in its value")
        out.append((name, value.strip()))
    return tuple(out)


def parse_header_line(line: str) -> tuple[str, str]:
    """`"Referer: https://x/"` → `("Referer", "https://x/")`."""
    name, sep, value = line.partition(":")
    if not sep:
        raise HeaderError(f"expected 'Name: value', got {line!r}")
    return validate_headers([(name, value)])[0]


def _derive(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, b"hls-gateway/" + label, hashlib.sha256).digest()


def _keystream_xor(key: bytes, iv: bytes, data: bytes) -> bytes:
    blocks = []
    for counter in range((len(data) + 31) // 32):
        blocks.append(hmac.new(key, iv + struct.pack(">I", counter), hashlib.sha256).digest())
    stream = b"".join(blocks)[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Key:
    __slots__ = ("enc", "mac")

    def __init__(self, secret: bytes) -> None:
        self.mac = _derive(secret, b"mac")
        self.enc = _derive(secret, b"enc")


class Signer:
    """Mints and verifies grant tokens. Old secrets stay valid for verification (rotation)."""

    def __init__(self, secret: bytes, previous: Sequence[bytes] = ()) -> None:
        if len(secret) < 16:
            raise ValueError("the secret must be at least 16 bytes")
        self._current = _Key(secret)
        self._keys = [self._current, *(_Key(old) for old in previous)]
        self._verified: LRUCache[str, Grant] = LRUCache(maxsize=8192)

    def mint(self, grant: Grant) -> str:
        fields: list[object] = [grant.directory, [list(p) for p in grant.headers], grant.expires]
        if grant.mode:
            fields.append(grant.mode)
        plain = json.dumps(
            fields,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8", "surrogateescape")
        flags = _VERSION
        packed = zlib.compress(plain, 9, wbits=-15)
        if len(packed) < len(plain):
            plain, flags = packed, flags | _FLAG_DEFLATE
        header = bytes([flags])
        key = self._current
        tag = hmac.new(key.mac, header + plain, hashlib.sha256).digest()[:_TAG_BYTES]
        return _b64encode(header + tag + _keystream_xor(key.enc, tag, plain))

    def verify(self, token: str, now: float | None = None) -> Grant:
        grant = self._verified.get(token)
        if grant is None:
            grant = self._open(token)
            self._verified[token] = grant
        if grant.expires is not None and (now if now is not None else time.time()) >= grant.expires:
            raise TokenExpired("link expired")
        return grant

    def _open(self, token: str) -> Grant:
        if not _TOKEN_RE.match(token):
            raise TokenError("malformed token")
        try:
            raw = _b64decode(token)
        except ValueError:
            raise TokenError("malformed token") from None
        if _b64encode(raw) != token:
            # Unused low bits of the last character would give one token many spellings.
            raise TokenError("malformed token")
        if len(raw) < 1 + _TAG_BYTES + 2 or raw[0] & 0x7F != _VERSION:
            raise TokenError("malformed token")
        header, tag, sealed = raw[:1], raw[1 : 1 + _TAG_BYTES], raw[1 + _TAG_BYTES :]
        for key in self._keys:
            plain = _keystream_xor(key.enc, tag, sealed)
            expected = hmac.new(key.mac, header + plain, hashlib.sha256).digest()[:_TAG_BYTES]
            if hmac.compare_digest(expected, tag):
                return _decode_grant(plain, deflated=bool(raw[0] & _FLAG_DEFLATE))
        raise TokenError("invalid token signature")


def _decode_grant(plain: bytes, *, deflated: bool) -> Grant:
    try:
        if deflated:
            plain = zlib.decompress(plain, wbits=-15)
        directory, headers, expires, *mode = json.loads(plain.decode("utf-8", "surrogateescape"))
        return Grant(
            str(directory),
            tuple((str(name), str(value)) for name, value in headers),
            None if expires is None else int(expires),
            str(mode[0]) if mode else "",
        )
    except (ValueError, TypeError, zlib.error):
        # Only reachable with a valid tag, i.e. a token minted by an incompatible build.
        raise TokenError("unreadable token") from None
