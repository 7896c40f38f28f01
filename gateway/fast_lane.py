"""Answers known from memory, written straight from the connection's protocol.

A cached playlist or a hot segment is decided the moment its request line and headers
arrive. Building an aiohttp request, a task, the middleware chain and a response object
around it costs several times what the answer itself does, so for these the connection
(`gateway.lane_connection`) writes the bytes directly. The answers come from the same
functions the full stack uses (`gateway.serve`), with the same front-door headers; anything
the lane is unsure of (a body, HEAD, HTTP/1.0, pipelining, a connection that is not idle or
has output queued) takes the full stack, which stays the reference. A request the lane can
judge but whose answer is not in memory is answered after a wait (`gateway.lane_waits`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from aiohttp.http import SERVER_SOFTWARE

from gateway.access_log import AccessRecord
from gateway.answers import Answer, Conditions
from gateway.middleware import FrontDoor, allow_headers
from gateway.recent import put_newest
from gateway.serve import BODY_SLICE

# The raw path, its conditions and the largest body wanted (None: any) -> the answer from
# memory, or None (`ProxyHandler.answer_now`).
AnswerNow = Callable[[str, Conditions, int | None], Answer | None]


_REQUESTS_REMEMBERED = 4096
# A player's request is a few hundred bytes; longer ones are parsed each time, so that the
# memory the remembered ones hold stays small (4096 x 1 KB) whatever clients send.
_REMEMBERED_REQUEST_BYTES = 1024

# Byte classes, checked with `bytes.translate(None, allowed)`: what is left over is not
# allowed (a C loop; the regular expressions this replaced cost most of the parse).
# A request target: printable ASCII; anything else is for aiohttp's parser to judge.
_TARGET_BYTES = bytes(range(0x21, 0x7F))
# A field name, lowercased: an RFC 9110 token.
_NAME_BYTES = b"!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyz-"
# A field value: no control characters but tab.
_VALUE_BYTES = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
# Anywhere in the head: the same, and CR and LF (the line ends are counted apart).
_HEAD_BYTES = b"\r\n" + _VALUE_BYTES
# Behind nginx (nginx/hls-gateway.conf) every request carries a new X-Request-Id, so no two
# requests are the same bytes; what they parse to is remembered without that value. Two
# spellings are looked for (nginx's, and lowercase): a request that spells it otherwise is
# remembered whole, as any other request.
_REQUEST_ID_FIELDS = (b"\r\nX-Request-Id:", b"\r\nx-request-id:")
# Headers asking for what only the full stack does: a request body, an upgrade, or
# validators and conditions the memory answers do not evaluate.
_FULL_STACK_ONLY = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"if-range",
        b"if-match",
        b"if-modified-since",
        b"if-unmodified-since",
    }
)


# LaneRequest and Reply are made per answer and never changed after; they are not frozen
# because a frozen dataclass's __init__ costs 0.6 µs against 0.16 (it sets each field
# through object.__setattr__), a tenth of a cached playlist's answer.
@dataclass(slots=True)
class LaneRequest:
    """What the lane reads from a request's header block."""

    target: str
    conditions: Conditions
    origin: str | None = None
    request_id: str | None = None
    user_agent: str | None = None

    def with_request_id(self, request_id: str | None) -> LaneRequest:
        """The same request under another X-Request-Id (the constructor, not
        `dataclasses.replace`, which costs several times as much)."""
        return LaneRequest(self.target, self.conditions, self.origin, request_id, self.user_agent)


def parse_head(data: bytes) -> LaneRequest | None:
    """`data` as one whole bodiless `GET /p/…` HTTP/1.1 request, or None."""
    if not data.startswith(b"GET /p/") or not data.endswith(b"\r\n\r\n"):
        return None
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        return None  # a CR or LF on its own: aiohttp refuses those
    if data.translate(None, _HEAD_BYTES):
        return None  # control characters
    lines = data[:-4].split(b"\r\n")
    if b"" in lines:
        return None  # a second request behind this one
    request_line = lines[0].split(b" ")
    if (
        len(request_line) != 3
        or request_line[2] != b"HTTP/1.1"
        or request_line[1].translate(None, _TARGET_BYTES)
    ):
        return None
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        name = name.lower()
        if not colon or not name or name in fields or name in _FULL_STACK_ONLY:
            return None
        if name.translate(None, _NAME_BYTES):
            return None
        fields[name] = value
    if b"host" not in fields:
        return None  # HTTP/1.1 requires it: the full stack answers 400
    connection = fields.get(b"connection")
    if connection is not None and connection.strip(b" \t").lower() != b"keep-alive":
        return None
    return LaneRequest(
        request_line[1].decode("ascii"),
        Conditions(
            _text(fields.get(b"if-none-match")) or "",
            _text(fields.get(b"range")),
            _text(fields.get(b"accept-encoding")) or "",
        ),
        _text(fields.get(b"origin")),
        _text(fields.get(b"x-request-id")),
        _text(fields.get(b"user-agent")),
    )


def without_request_id(data: bytes) -> tuple[bytes, bytes | None]:
    """`data` with the value of its first X-Request-Id field cut out, and that value (None:
    no such field). Requests that differ only in that value give the same bytes."""
    for field in _REQUEST_ID_FIELDS:
        start = data.find(field)
        if start >= 0:
            break
    else:
        return data, None
    start += len(field)
    end = data.find(b"\r\n", start)
    if end < 0:
        return data, None  # not a whole head: parse_head refuses it
    return data[:start] + data[end:], data[start:end]


def _text(value: bytes | None) -> str | None:
    """A field's value as aiohttp gives it: without the whitespace around it."""
    return None if value is None else value.strip(b" \t").decode("latin-1")


def _length(answer: Answer) -> str:
    return "" if answer.status == 304 else f"Content-Length: {len(answer.body)}\r\n"


class HttpDate:
    """The `Date` and `Server` header lines, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def lines(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._text = f"Date: {formatdate(now, usegmt=True)}\r\nServer: {SERVER_SOFTWARE}\r\n"
        return self._text


_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n" for status in HTTPStatus
}


@dataclass(slots=True)
class Reply:
    request: LaneRequest
    answer: Answer
    request_id: str
    head: bytes
    streamed: int | None = None  # the body bytes sent of a streamed answer

    def record(self, remote: str | None, seconds: float) -> AccessRecord:
        return AccessRecord(
            remote,
            "GET",
            self.request.target.partition("?")[0],
            self.answer.status,
            # Bytes written, as aiohttp counts them.
            len(self.head) + (len(self.answer.body) if self.streamed is None else self.streamed),
            seconds,
            self.answer.headers.get("X-Cache"),
            self.request_id,
            self.request.user_agent,
        )


class FastLane:
    """Turns a raw request into response bytes when the answer is already in memory."""

    def __init__(self, answer_now: AnswerNow, front: FrontDoor) -> None:
        self._answer_now = answer_now
        self.front = front
        self._any_origin = front.cors.any_origin
        cors = allow_headers("*").items() if self._any_origin else ()
        # What ends every head: the same for every answer.
        self._tail = "".join(f"{name}: {value}\r\n" for name, value in cors) + "\r\n"
        self._date = HttpDate()
        self._answered = front.metrics.fast_answers
        # Players repeat the very same request bytes (one URL, the same headers): what they
        # parse to is kept, and so is the head each answer object starts with.
        self._parsed: dict[bytes, LaneRequest] = {}
        self._heads: dict[int, tuple[Answer, str]] = {}

    def take(self, data: bytes, *, big_bodies: bool) -> Reply | LaneRequest | None:
        """The answer to `data` if it is in memory; else the request, when the lane can
        judge it (`gateway.lane_waits` may answer it after a wait); else None."""
        request = self._parsed.get(data)
        if request is None:
            request = self._parse(data)
            if request is None:
                return None
        if request.origin is not None and not self._any_origin:
            return None  # per-origin CORS (Vary: Origin) stays with the full stack
        answer = self._answer_now(
            request.target, request.conditions, None if big_bodies else BODY_SLICE
        )
        if answer is None:
            return request
        request_id = self.front.request_id(request.request_id)
        self.front.count(request.target, answer.status)
        self.front.metrics.count(self._answered)
        return Reply(request, answer, request_id, self.head(answer, request_id))

    def _parse(self, data: bytes) -> LaneRequest | None:
        """`data` parsed, or taken from a remembered request that differs only in its
        X-Request-Id; remembered in turn (without its id) when it is new."""
        remembered, offered_id = without_request_id(data)
        if offered_id is not None:
            known = self._parsed.get(remembered)
            if known is not None:
                if offered_id.translate(None, _VALUE_BYTES):
                    return None  # control characters: for aiohttp's parser to refuse
                return known.with_request_id(_text(offered_id))
        request = parse_head(data)
        if request is not None and len(remembered) <= _REMEMBERED_REQUEST_BYTES:
            # Kept without the id, which is this request's alone.
            kept = request if offered_id is None else request.with_request_id(None)
            put_newest(self._parsed, remembered, kept, _REQUESTS_REMEMBERED)
        return request

    def head(self, answer: Answer, request_id: str, framing: str | None = None) -> bytes:
        """The status line and headers of `answer`; `framing` replaces its Content-Length."""
        if framing is not None:
            start = self._start(answer, framing)
        elif answer.reused:
            # Made once per answer kept: the answer is held with it, so that its id is not
            # given to another object meanwhile.
            known = self._heads.get(id(answer))
            if known is None or known[0] is not answer:
                known = (answer, self._start(answer, _length(answer)))
                put_newest(self._heads, id(answer), known, _REQUESTS_REMEMBERED)
            start = known[1]
        else:
            start = self._start(answer, _length(answer))
        return (f"{start}{self._date.lines()}X-Request-Id: {request_id}\r\n{self._tail}").encode(
            "latin-1"
        )

    @staticmethod
    def _start(answer: Answer, framing: str) -> str:
        own = "".join([f"{name}: {value}\r\n" for name, value in answer.headers.items()])
        return f"{_STATUS_LINES[answer.status]}{own}{framing}"
