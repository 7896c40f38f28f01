"""The connection protocol: aiohttp's, with the lane in front of its parser.

A request the lane can answer from memory is answered in `data_received`; one it can answer
after a wait runs as a task of the connection, with whatever the client sends meanwhile held
back until the answer is written. Anything else is fed to aiohttp's parser, as without the
lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.access_log import GatewayAccessLogger
from gateway.fast_lane import FastLane, Reply
from gateway.lane_waits import Pending, WaitedAnswers, write_whole
from gateway.serve import writes_by_reference

log = logging.getLogger("gateway.fast_lane")


class LaneRequestHandler(RequestHandler):
    """aiohttp's connection protocol, with the fast lane in front of its parser."""

    __slots__ = ("_at_boundary", "_backlog", "_lane", "_lane_task", "_waits", "by_reference")

    def __init__(
        self,
        manager: web.Server,
        lane: FastLane | None,
        waits: WaitedAnswers | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        if self.access_logger is not None and not isinstance(
            self.access_logger, GatewayAccessLogger
        ):
            lane = waits = None  # the lane can only write the gateway's own access log lines
        self._lane = lane
        self._waits = waits
        # Whether everything fed to aiohttp's parser so far ended at a header block's end:
        # otherwise its parser may hold half a request, and the next bytes are its rest.
        self._at_boundary = True
        self.by_reference = writes_by_reference(self._loop)
        # A request the lane is answering after a wait, and what arrived meanwhile (the
        # next requests of a pipelining client): fed on once the answer is written.
        self._lane_task: asyncio.Task[None] | None = None
        self._backlog: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        if self._lane_task is not None:
            self._backlog.append(data)
            return
        if self._lane is not None and self._at_boundary and self._idle():
            try:
                taken = self._lane.take(data, big_bodies=self.by_reference)
            except Exception:
                log.exception("fast lane failed; the full stack answers instead")
                taken = None
            if isinstance(taken, Reply):
                self._send(taken)
                return
            if taken is not None and self._waits is not None:
                pending = self._waits.pending(taken)
                if pending is not None:
                    self._lane_task = self._loop.create_task(self._answer_later(pending, data))
                    return
        self._to_parser(data)

    def _to_parser(self, data: bytes) -> None:
        self._at_boundary = data.endswith(b"\r\n\r\n")
        super().data_received(data)

    async def _answer_later(self, pending: Pending, data: bytes) -> None:
        assert self._waits is not None
        started = self._loop.time()
        reply: Reply | None = None
        try:
            reply = await self._waits.serve(pending, self)
        except Exception:
            log.exception("fast lane failed; the connection is closed")
            if self.transport is not None:
                self.transport.abort()
        finally:
            self._lane_task = None
        backlog = b"".join(self._backlog)
        self._backlog.clear()
        if reply is None:
            data += backlog  # nothing was written: the full stack answers it all
            if self.transport is not None and not self.transport.is_closing():
                self._to_parser(data)
            return
        self._answered(reply, self._loop.time() - started)
        if backlog and self.transport is not None and not self.transport.is_closing():
            self.data_received(backlog)

    async def drain(self) -> None:
        await self._drain_helper()

    def _process_keepalive(self) -> None:
        if self._lane_task is not None:
            # Not idle: the lane is answering (waiting for upstream, or streaming a fill).
            self._keepalive_handle = self._loop.call_at(
                self._loop.time() + self._keepalive_timeout, self._process_keepalive
            )
            return
        super()._process_keepalive()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._lane_task is not None:
            self._lane_task.cancel()
        super().connection_lost(exc)

    async def shutdown(self, timeout: float | None = 15.0) -> None:  # noqa: ASYNC109 (aiohttp's)
        task = self._lane_task
        if task is not None:
            # As aiohttp does for its own handlers: the answer under way may finish.
            done, _ = await asyncio.wait([task], timeout=timeout)
            if not done:
                task.cancel()
        await super().shutdown(timeout)

    def _idle(self) -> bool:
        """No request in progress or queued, and nothing of an earlier answer still queued
        for the socket (a client that does not read gets the full stack's back-pressure)."""
        waiter = self._waiter
        transport = self.transport
        # Waiting for the next request, or a new connection whose request loop has not
        # started yet (nothing was fed to its parser).
        waiting = not waiter.done() if waiter is not None else not self._request_count
        return (
            waiting
            and not self._messages
            and self._payload_parser is None
            and not self._upgraded
            and not self._close
            and not self._force_close
            and transport is not None
            and not transport.get_write_buffer_size()
        )

    def _send(self, reply: Reply) -> None:
        with contextlib.suppress(ConnectionError):  # the client went away meanwhile
            write_whole(self, reply)
        self._answered(reply, 0.0)

    def _answered(self, reply: Reply, seconds: float) -> None:
        """An answer is written: the connection is idle from now, and the answer logged."""
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        if self._logging_enabled and isinstance(self.access_logger, GatewayAccessLogger):
            transport = self.transport
            peer = transport.get_extra_info("peername") if transport is not None else None
            remote = peer[0] if isinstance(peer, tuple) else None
            self.access_logger.write(reply.record(remote, seconds))


FAST_LANE = web.AppKey("fast_lane", FastLane)
LANE_WAITS = web.AppKey("lane_waits", WaitedAnswers)


class LaneServer(web.Server):
    def __init__(
        self, *args: Any, lane: FastLane, waits: WaitedAnswers | None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._lane = lane
        self._waits = waits

    def __call__(self) -> RequestHandler:
        return LaneRequestHandler(self, self._lane, self._waits, loop=self._loop, **self._kwargs)


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
            waits=self.app.get(LANE_WAITS),
            **server._kwargs,
        )
