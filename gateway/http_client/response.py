"""One connection's protocol, and the answer it is reading: fed in the connection's
callbacks, awaited by whoever asked."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol, cast

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.http_client.errors import HttpError, ReadTimeout, ResponseError, StaleConnection
from gateway.http_client.framing import (
    MAX_HEAD_BYTES,
    ChunkedDecoder,
    Delimited,
    body_of,
    content_decoder,
    parse_head,
)

CHUNK_BYTES = 256 * 1024
# Body bytes buffered before the socket stops being read, and below which it is read again.
# Low, so that a read that brings the head and a first chunk stops there: the event loop
# would otherwise go on reading the socket (libuv reads a ready socket up to 32 times in a
# row) before the task waiting for the head runs, and a 1.1 MB answer was read whole,
# 0.5 ms, before its first chunk moved on (`bench.miss_trace`).
_HIGH_WATER = 64 * 1024
_LOW_WATER = 16 * 1024

ConnectionKey = tuple[str, str, int]
# A piece of a body: bytes as read, or a view into what a read brought with the head.
BodyChunk = bytes | memoryview


class Pool(Protocol):
    def finished(self, connection: Connection, *, reusable: bool) -> None:
        """`connection` is done with its answer: keep it for another request, or not."""


class Connection(asyncio.Protocol):
    """One socket; it feeds the answer it is reading, one at a time."""

    def __init__(self, key: ConnectionKey) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.answered = 0  # answers completed on this connection
        self.idle_since = 0.0
        self.lost = False
        # While a proxy's handshake runs: the bytes it is read from (`read_exactly`).
        self.handshaking = False
        self._handshake = bytearray()
        self._handshake_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is not None:
            response.feed(data)
        elif self.handshaking:
            self._handshake += data
            self._wake_handshake()
        else:
            self.close()  # nothing was asked: a server that talks out of turn is not reused

    async def read_exactly(self, size: int) -> bytes:
        """The next `size` bytes, while no answer is being read (a proxy's handshake, which
        runs within the connect time limit)."""
        loop = asyncio.get_running_loop()
        while len(self._handshake) < size:
            if self.lost:
                raise ConnectionResetError("the connection closed")
            self._handshake_waiter = loop.create_future()
            try:
                await self._handshake_waiter
            finally:
                self._handshake_waiter = None
        data = bytes(self._handshake[:size])
        del self._handshake[:size]
        return data

    def _wake_handshake(self) -> None:
        waiter = self._handshake_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        return False  # close the transport; `connection_lost` tells the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        response = self.response
        if response is not None:
            response.lost(exc)
        self._wake_handshake()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """An answer whose head is in; read its body with `iter_chunks()` or `read()`, then
    `release()` (or `close()`) exactly once."""

    def __init__(
        self,
        pool: Pool,
        connection: Connection,
        url: URL,
        read_timeout: float,
        *,
        tunnel: bool = False,
    ) -> None:
        self.url = url
        self.status = 0
        self.reason = ""
        self.version = "1.1"
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
        self._pool = pool
        self._connection = connection
        self._read_timeout = read_timeout
        self._tunnel = tunnel  # a CONNECT answer: no body, whatever its headers say
        self._head = b""
        self._head_done = False
        self._received = False  # any byte of the answer
        self._delimited = Delimited.EMPTY
        self._remaining = 0  # of a Content-Length body
        self._chunked: ChunkedDecoder | None = None
        self._body: deque[BodyChunk] = deque()
        self._buffered = 0
        self._complete = False
        self._reusable = True
        self._error: HttpError | None = None
        self._stale = False
        self._waiter: asyncio.Future[None] | None = None
        self._holds = 0
        self._flow_paused = False
        self._reading = True
        self._done = False

    # -- fed by the connection -------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._received = True
        if not self._head_done:
            data = self._feed_head(data)
        if data and self._head_done and self._error is None:
            self._feed_body(data)
        self._wake()

    def _feed_head(self, data: bytes) -> BodyChunk:
        """Take the head from `data` (skipping 1xx answers); return what follows it.

        What follows is a view into `data`, not a copy: the first read of an answer brings
        its head and up to 256 KB of body, and copying that into a fresh allocation cost
        the first byte about 0.1 ms in page faults (`bench.miss_trace`)."""
        buffer = self._head + data if self._head else data
        start = 0
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0 or end - start > MAX_HEAD_BYTES:
                if len(buffer) - start > MAX_HEAD_BYTES:
                    self._fail(ResponseError("upstream answer head too large"))
                    return b""
                self._head = buffer[start:]
                return b""
            try:
                head = parse_head(buffer[start:end])
                start = end + 4
                if head.interim:
                    continue
                body = body_of(head, tunnel=self._tunnel)
            except ResponseError as exc:
                self._fail(exc)
                return b""
            self.version, self.status, self.reason = head.version, head.status, head.reason
            self.headers = head.headers
            self._delimited = body.delimited
            self._remaining = body.length
            self._reusable = body.reusable
            self._complete = body.delimited is Delimited.EMPTY
            if body.delimited is Delimited.CHUNKED:
                self._chunked = ChunkedDecoder()
            self._head = b""
            self._head_done = True
            return memoryview(buffer)[start:] if start < len(buffer) else b""

    def _feed_body(self, data: BodyChunk) -> None:
        if self._complete:
            self._overrun()
        elif self._delimited is Delimited.LENGTH:
            if len(data) > self._remaining:
                self._overrun()
                return
            self._remaining -= len(data)
            self._append(data)
            self._complete = self._remaining == 0
        elif self._chunked is not None:
            pieces: list[bytes] = []
            try:
                whole = self._chunked.feed(bytes(data), pieces)
            except ResponseError as exc:
                self._fail(exc)
                return
            for piece in pieces:
                self._append(piece)
            self._complete = self._chunked.done
            if not whole:
                self._overrun()
        else:
            self._append(data)

    def _overrun(self) -> None:
        """Bytes beyond the end the answer declared: its length is wrong or the stream is
        out of step, so neither the body nor the connection is trusted."""
        self._fail(ResponseError("upstream sent more than the answer it declared"))

    def _append(self, data: BodyChunk) -> None:
        if not data:
            return
        self._body.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and not self._flow_paused:
            self._flow_paused = True
            self._update_reading()

    def lost(self, exc: Exception | None) -> None:
        self._reusable = False
        if self._complete or self._error is not None:
            pass
        elif not self._received and self._connection.answered:
            self._stale = True
        elif self._head_done and self._delimited is Delimited.CLOSE:
            self._complete = True
        elif self._head_done:
            self._fail(ResponseError("upstream closed the connection mid-body"))
        else:
            reason = f": {type(exc).__name__}" if exc is not None else ""
            self._fail(ResponseError(f"upstream closed the connection before answering{reason}"))
        self._wake()

    def _fail(self, error: HttpError) -> None:
        if self._error is None:
            self._error = error
        self._reusable = False
        self._connection.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- awaited by whoever asked ------------------------------------------------------------

    async def _wait(self) -> None:
        """Until the connection has something new: bytes, the end, or an error."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self._read_timeout, self._timed_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self._fail(ReadTimeout("upstream sent nothing in time"))
            waiter.set_result(None)

    async def read_head(self) -> None:
        """Until the head is in. Raises the answer's error if one is known by then (a body
        that already broke its framing, say), `StaleConnection` if a pooled connection
        turned out closed."""
        while not self._head_done:
            if self._stale:
                raise StaleConnection
            if self._error is not None:
                raise self._error
            await self._wait()
        if self._error is not None:
            raise self._error

    async def iter_chunks(self) -> AsyncIterator[BodyChunk]:
        """The body as it arrives, decoded (chunked framing removed, gzip or deflate
        undone), up to `CHUNK_BYTES` at a time."""
        decoder = content_decoder(self.headers.get("Content-Encoding", ""))
        while True:
            if self._error is not None:
                raise self._error
            if self._body:
                chunk = self._take()
                if decoder is not None:
                    chunk = decoder.decode(chunk)
                    if not chunk:
                        continue
                yield chunk
            elif self._complete:
                if decoder is not None:
                    tail = decoder.finish()
                    if tail:
                        yield tail
                return
            else:
                await self._wait()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    def _take(self) -> BodyChunk:
        body = self._body
        first = body.popleft()
        if body and len(first) < CHUNK_BYTES:
            parts = [first]
            size = len(first)
            while body and size + len(body[0]) <= CHUNK_BYTES:
                piece = body.popleft()
                parts.append(piece)
                size += len(piece)
            first = b"".join(parts)
        self._buffered -= len(first)
        if self._flow_paused and self._buffered < _LOW_WATER:
            self._flow_paused = False
            self._update_reading()
        return first

    def hold_reading(self) -> Callable[[], None]:
        """Read nothing more from the socket until the returned function is called."""
        if self._done or self._connection.lost:
            return _nothing
        self._holds += 1
        self._update_reading()
        released = False

        def resume() -> None:
            nonlocal released
            if not released:
                released = True
                self._holds -= 1
                self._update_reading()

        return resume

    @property
    def reading(self) -> bool:
        """Whether the socket is being read (not held, not paused for a full buffer)."""
        return self._reading

    def _update_reading(self) -> None:
        if self._done:
            return  # the connection may carry another answer by now
        transport = self._connection.transport
        wanted = not self._flow_paused and self._holds == 0
        if wanted == self._reading or transport is None or transport.is_closing():
            return
        self._reading = wanted
        if wanted:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def release(self) -> None:
        """Done with this answer: its connection is kept if the whole body was read and
        the connection can carry another request, else closed."""
        if self._done:
            return
        connection = self._connection
        # An error has already made the answer not reusable (`_fail`).
        reusable = self._complete and self._reusable and not self._body and not connection.lost
        if reusable and not self._reading and connection.transport is not None:
            connection.transport.resume_reading()  # the next answer on it is read at once
            self._reading = True
        self._done = True
        self._pool.finished(connection, reusable=reusable)

    def close(self) -> None:
        """Done with this answer, and with its connection."""
        if self._done:
            return
        self._done = True
        self._connection.close()
        self._pool.finished(self._connection, reusable=False)


def _nothing() -> None:
    pass
