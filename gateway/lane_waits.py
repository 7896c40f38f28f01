"""Answers the connection writes itself after a wait: a cold miss streamed as it is fetched,
a playlist fetched and rewritten, an object looked up in the index, an upstream error.

The decision is the full stack's own (`ProxyHandler.outcome`); what this saves is aiohttp's
request, task, middleware and response objects around it: a cold miss's first byte came
0.07-0.13 ms sooner at the median, side by side (`bench/miss_ttfb.py`'s workload). The
answers carry the same headers, metrics and access log lines as
the full stack's, and a test compares the bytes. A cached object that is not in memory and
cannot be mapped is left to the full stack, which sends it from its file.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.answers import Answer, Conditions
from gateway.errors import GatewayError
from gateway.fast_lane import FastLane, LaneRequest, Reply
from gateway.fetcher import Joined, MediaHead
from gateway.middleware import error_answer
from gateway.serve import BODY_SLICE, cut_short_on_failure, fill_headers
from gateway.upstream import REQUEST_ID

if TYPE_CHECKING:
    from gateway.proxy import Hit, Outcome, Route

log = logging.getLogger("gateway.fast_lane")


class Misses(Protocol):
    """The decisions the lane waits for (`ProxyHandler`)."""

    def route(self, raw: str) -> Route: ...

    async def outcome(self, raw: str, route: Route, conditions: Conditions) -> Outcome: ...

    def hit_answer(self, hit: Hit, conditions: Conditions) -> Answer | None: ...

    def count_streamed(self, joined: Joined, sent: int) -> None: ...


class LaneConnection(Protocol):
    """The connection a waited answer is written to."""

    transport: asyncio.Transport | None
    # Whether its transport queues a buffer by reference (else it copies what is unsent).
    by_reference: bool

    async def drain(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Pending:
    """A verified request, to be answered once its outcome is known."""

    request: LaneRequest
    route: Route


class WaitedAnswers:
    """Answers the lane's requests that are not in memory, on the connection itself."""

    def __init__(self, misses: Misses, lane: FastLane) -> None:
        self._misses = misses
        self._lane = lane
        self._front = lane.front
        self._waited = lane.front.metrics.lane_waited_answers

    def pending(self, request: LaneRequest) -> Pending | None:
        """`request` if this can answer it, else None (the full stack answers)."""
        if request.conditions.range is not None or self._front.full:
            return None  # ranges of objects not in memory, and shedding, are the full stack's
        try:
            route = self._misses.route(request.target)
        except GatewayError:
            return None  # the full stack answers what is wrong with the path
        return Pending(request, route)

    async def serve(self, pending: Pending, connection: LaneConnection) -> Reply | None:
        """Answer `pending` on `connection`: the reply written, or None when nothing was
        written and only the full stack can answer it."""
        request = pending.request
        path = request.target.partition("?")[0]  # logged without the query (credentials)
        front = self._front
        request_id = front.request_id(request.request_id)
        # Upstream requests made for this client carry its id (a fill copies this context).
        REQUEST_ID.set(request_id)
        front.active += 1
        try:
            try:
                outcome = await self._misses.outcome(
                    request.target, pending.route, request.conditions
                )
            except GatewayError as exc:
                front.refused("GET", path, exc)
                outcome = error_answer(exc)
            except Exception:
                log.exception("unhandled error for GET %s", path[:80])
                outcome = error_answer(GatewayError("internal error", 500))
            if isinstance(outcome, Joined):
                return await self._stream(request, request_id, outcome, connection)
            if not isinstance(outcome, Answer):
                answer = self._misses.hit_answer(outcome, request.conditions)
                if answer is None:
                    return None
                outcome = answer
            reply = Reply(request, outcome, request_id, self._lane.head(outcome, request_id))
            front.count(request.target, outcome.status)
            front.metrics.count(self._waited)
            await _write_answer(reply, connection)
            return reply
        finally:
            front.active -= 1

    async def _stream(
        self, request: LaneRequest, request_id: str, joined: Joined, connection: LaneConnection
    ) -> Reply:
        """A fill, sent as it grows; one that fails cuts the connection short."""
        media = joined.head
        fill = joined.flight.fill
        assert isinstance(media, MediaHead) and fill is not None
        length = media.content_length
        chunked = length is None
        framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
        answer = Answer(media.status, fill_headers(media, joined.state))
        head = self._lane.head(answer, request_id, framing)
        self._front.count(request.target, media.status)
        self._front.metrics.count(self._waited)
        sent = 0
        try:
            with cut_short_on_failure(connection):
                pieces: list[bytes | memoryview] = [head]  # the head goes with the first chunk
                async for chunk in fill.read_from(0):
                    if chunked:
                        pieces += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
                    else:
                        pieces.append(chunk)
                    _write(connection, pieces)
                    sent += len(chunk)
                    pieces = []
                    await connection.drain()
                if chunked:
                    pieces.append(b"0\r\n\r\n")
                if pieces:
                    _write(connection, pieces)
        finally:
            joined.release()
            self._misses.count_streamed(joined, sent)
        return Reply(request, answer, request_id, head, sent)


def _write(connection: LaneConnection, pieces: list[bytes | memoryview]) -> None:
    transport = connection.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    if len(pieces) == 1:
        transport.write(pieces[0])
    else:
        transport.writelines(pieces)


def write_whole(connection: LaneConnection, reply: Reply) -> None:
    """`reply` in one write: its head, and its body if it has one (a 304 or an
    X-Accel-Redirect answer has none)."""
    body = reply.answer.body
    _write(connection, [reply.head, body] if body else [reply.head])


async def _write_answer(reply: Reply, connection: LaneConnection) -> None:
    """Where the transport would copy what the socket does not take at once, a big body
    goes in slices, each once the socket took the last (as `gateway.serve.BodyResponse`)."""
    body = memoryview(reply.answer.body)
    try:
        if connection.by_reference or len(body) <= BODY_SLICE:
            write_whole(connection, reply)
            return
        _write(connection, [reply.head, body[:BODY_SLICE]])
        for offset in range(BODY_SLICE, len(body), BODY_SLICE):
            await connection.drain()
            _write(connection, [body[offset : offset + BODY_SLICE]])
    except (ConnectionError, RuntimeError):
        pass  # the client went away
