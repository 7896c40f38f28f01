"""Answers known from memory, written straight from the connection's protocol.

A cached playlist or a hot segment is decided the moment its request line and headers
arrive. Building an aiohttp request, a task, the middleware chain and a response object
around it costs several times what the answer itself does, so for these the connection
writes the bytes directly. The answers come from the same functions the full stack uses
(`gateway.serve`), with the same front-door headers; anything the lane is unsure of (a body,
HEAD, HTTP/1.0, pipelining, a connection that is not idle or has output queued, a path not
verified by the full stack before) takes the full stack, which stays the reference.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.web_protocol import RequestHandler

from gateway.access_log import AccessRecord, GatewayAccessLogger
from gateway.middleware import FrontDoor, allow_headers
from gateway.serve import BODY_SLICE, Answer, Conditions, writes_by_reference

log = logging.getLogger("gateway.fast_lane")

# The raw path, its conditions and the largest body wanted (None: any) -> the answer from
# memory, or None (`ProxyHandler.answer_now`).
AnswerNow = Callable[[str, Conditions, int | None], Answer | None]

# Printable ASCII only: anything else is for aiohttp's parser to judge.
_TARGET = re.compile(rb"/p/[!-~]*")
_FIELD_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9a-z-]+")
# Control characters other than the CRLF line ends, and a CR or LF on its own.
_BAD_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")
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


@dataclass(frozen=True, slots=True)
class LaneRequest:
    """What the lane reads from a request's header block."""

    target: str
    conditions: Conditions
    origin: str | None = None
    request_id: str | None = None
    user_agent: str | None = None


def parse_head(data: bytes) -> LaneRequest | None:
    """`data` as one whole bodiless `GET /p/…` HTTP/1.1 request, or None."""
    if not data.startswith(b"GET /p/") or not data.endswith(b"\r\n\r\n"):
        return None
    lines = data[:-4].split(b"\r\n")
    if b"" in lines or _BAD_BYTES.search(data):
        return None  # a second request behind this one, or bytes aiohttp would refuse
    request_line = lines[0].split(b" ")
    if (
        len(request_line) != 3
        or request_line[2] != b"HTTP/1.1"
        or not _TARGET.fullmatch(request_line[1])
    ):
        return None
    fields: dict[bytes, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        name = name.lower()
        if not colon or name in fields or name in _FULL_STACK_ONLY:
            return None
        if not _FIELD_NAME.fullmatch(name):
            return None
        fields[name] = value.strip(b" \t").decode("latin-1")
    if b"host" not in fields:
        return None  # HTTP/1.1 requires it: the full stack answers 400
    connection = fields.get(b"connection")
    if connection is not None and connection.lower() != "keep-alive":
        return None
    return LaneRequest(
        request_line[1].decode("ascii"),
        Conditions(
            fields.get(b"if-none-match", ""),
            fields.get(b"range"),
            fields.get(b"accept-encoding", ""),
        ),
        fields.get(b"origin"),
        fields.get(b"x-request-id"),
        fields.get(b"user-agent"),
    )


class HttpDate:
    """The `Date` header value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._text = formatdate(now, usegmt=True)
        return self._text


_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n" for status in HTTPStatus
}


@dataclass(frozen=True, slots=True)
class Reply:
    request: LaneRequest
    answer: Answer
    request_id: str
    head: bytes

    def record(self, remote: str | None, seconds: float) -> AccessRecord:
        return AccessRecord(
            remote,
            "GET",
            self.request.target.partition("?")[0],
            self.answer.status,
            len(self.head) + len(self.answer.body),  # bytes written, as aiohttp counts them
            seconds,
            self.answer.headers.get("X-Cache"),
            self.request_id,
            self.request.user_agent,
        )


class FastLane:
    """Turns a raw request into response bytes when the answer is already in memory."""

    def __init__(self, answer_now: AnswerNow, front: FrontDoor) -> None:
        self._answer_now = answer_now
        self._front = front
        self._any_origin = front.cors.any_origin
        self._cors = allow_headers("*")
        self._date = HttpDate()
        self._answered = front.metrics.fast_answers

    def reply(self, data: bytes, *, big_bodies: bool) -> Reply | None:
        request = parse_head(data)
        if request is None or (request.origin is not None and not self._any_origin):
            return None  # per-origin CORS (Vary: Origin) stays with the full stack
        answer = self._answer_now(
            request.target, request.conditions, None if big_bodies else BODY_SLICE
        )
        if answer is None:
            return None
        request_id = self._front.request_id(request.request_id)
        self._front.count(request.target, answer.status)
        self._answered.inc()
        return Reply(request, answer, request_id, self._head(answer, request_id))

    def _head(self, answer: Answer, request_id: str) -> bytes:
        lines = [_STATUS_LINES[answer.status]]
        lines.extend(f"{name}: {value}\r\n" for name, value in answer.headers.items())
        if answer.status != 304:
            lines.append(f"Content-Length: {len(answer.body)}\r\n")
        lines.append(f"Date: {self._date()}\r\nServer: {SERVER_SOFTWARE}\r\n")
        lines.append(f"X-Request-Id: {request_id}\r\n")
        if self._any_origin:
            lines.extend(f"{name}: {value}\r\n" for name, value in self._cors.items())
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")


class LaneRequestHandler(RequestHandler):
    """aiohttp's connection protocol, with the fast lane in front of its parser."""

    __slots__ = ("_at_boundary", "_lane")

    def __init__(self, manager: web.Server, lane: FastLane | None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        if self.access_logger is not None and not isinstance(
            self.access_logger, GatewayAccessLogger
        ):
            lane = None  # the lane can only write the gateway's own access log lines
        self._lane = lane
        # Whether everything fed to aiohttp's parser so far ended at a header block's end:
        # otherwise its parser may hold half a request, and the next bytes are its rest.
        self._at_boundary = True

    def data_received(self, data: bytes) -> None:
        if self._lane is not None and self._at_boundary and self._idle():
            try:
                reply = self._lane.reply(data, big_bodies=writes_by_reference())
            except Exception:
                log.exception("fast lane failed; the full stack answers instead")
                reply = None
            if reply is not None:
                self._send(reply)
                return
        self._at_boundary = data.endswith(b"\r\n\r\n")
        super().data_received(data)

    def _idle(self) -> bool:
        """No request in progress or queued, and nothing of an earlier answer still queued
        for the socket (a client that does not read gets the full stack's back-pressure)."""
        waiter = self._waiter
        transport = self.transport
        return (
            waiter is not None
            and not waiter.done()
            and not self._messages
            and self._payload_parser is None
            and not self._upgraded
            and not self._close
            and not self._force_close
            and transport is not None
            and not transport.get_write_buffer_size()
        )

    def _send(self, reply: Reply) -> None:
        transport = self.transport
        assert transport is not None
        body = reply.answer.body
        if body:
            transport.writelines((reply.head, body))
        else:
            transport.write(reply.head)
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        if self._logging_enabled and isinstance(self.access_logger, GatewayAccessLogger):
            peer = transport.get_extra_info("peername")
            remote = peer[0] if isinstance(peer, tuple) else None
            self.access_logger.write(reply.record(remote, 0.0))


FAST_LANE = web.AppKey("fast_lane", FastLane)


class LaneServer(web.Server):
    def __init__(self, *args: Any, lane: FastLane, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lane = lane

    def __call__(self) -> RequestHandler:
        return LaneRequestHandler(self, self._lane, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose connections take the fast lane of the app (when it has one)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        lane = self.app.get(FAST_LANE)
        if lane is None:
            return server
        return LaneServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            lane=lane,
            **server._kwargs,
        )
