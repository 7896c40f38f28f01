"""Single-flight upstream fetches: one upstream request per object, however many clients wait.

The first request for an object starts a *flight*; later ones join it. A flight reads the
start of the body to learn what it is: a playlist or MPD is read whole (bounded) and handed to
every waiter for rewriting; anything else becomes a `Fill` that all waiters stream from while
it grows, and that is admitted to the cache only once complete and length-checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gateway.broadcast import Broadcast
from gateway.cache.entry import Entry
from gateway.cache.fill import Fill
from gateway.cache.keys import cache_key, storage_name
from gateway.cache.segments import SegmentCache, new_entry
from gateway.cache.shared_flight import (
    LOCK_SECONDS,
    Claim,
    Committed,
    FlightLocks,
    RemoteFill,
)
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.http_client import BodyChunk
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.signing import Grant
from gateway.sniff import sniff_content_type
from gateway.upstream import UpstreamClient, UpstreamResponse
from playlists import dash, hls

log = logging.getLogger("gateway.fetch")

_SNIFF_BYTES = 512
# How much of the first chunk the manifest and media-type checks look at (an MPD is
# recognised within its first 4 KB; a playlist by its first line).
_SNIFF_WINDOW = 8192
# A fetched manifest answers clients that ask for it this long after its flight ends: until
# the first of its clients has stored its rewritten copy, a request arriving in between
# would otherwise fetch it again (a hundred players polling one live playlist did).
MANIFEST_LINGER_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Target:
    """What one client request asks of upstream."""

    grant: Grant
    upstream_url: str
    range_header: str | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A whole playlist or MPD body, not yet rewritten."""

    body: bytes
    final_url: str
    kind: str  # "hls" or "dash"


@dataclass(frozen=True, slots=True)
class MediaHead:
    status: int
    content_type: str
    content_length: int | None
    content_range: str | None
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class Stored:
    """The object was committed to the cache by a flight that ended a moment ago."""

    entry: Entry
    path: Path


Head = Manifest | MediaHead | Stored
Produce = Callable[[], Awaitable[bytes]]


@dataclass(slots=True)
class Flight:
    key: str
    name: str
    head: Broadcast[Head]
    fill: Fill | RemoteFill | None = None
    waiting: int = 0  # clients counted in before the fill existed
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    lingers: bool = False  # a manifest: joinable a moment after it ends


@dataclass(slots=True)
class Joined:
    """A client's place in a flight; `release()` exactly once when done reading."""

    flight: Flight
    head: Head
    coalesced: bool

    @property
    def state(self) -> str:
        """What `X-Cache` and the metrics call it: the client that started the flight got a
        MISS, the ones that joined it a COALESCED."""
        return "COALESCED" if self.coalesced else "MISS"

    def release(self) -> None:
        if self.flight.fill is not None:
            self.flight.fill.detach()


class Fetcher:
    def __init__(
        self,
        settings: Settings,
        client: UpstreamClient,
        cache: SegmentCache,
        metrics: Metrics | None = None,
        locks: FlightLocks | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._cache = cache
        self._metrics = metrics or Metrics()
        self._locks = locks
        self._flights: dict[str, Flight] = {}

    def key_for(self, url: str, range_header: str | None = None) -> str:
        return cache_key(
            url,
            range_header=range_header,
            ignore_params=self._settings.cache_key_ignore_params,
        )

    def in_flight(self, key: str) -> bool:
        return key in self._flights

    @property
    def finds_committed(self) -> bool:
        """Whether a flight learns in its claim that the object is committed already: then
        looking it up before joining would only cost a round trip to Redis."""
        return self._locks is not None and self._locks.checks_index

    async def join(self, target: Target, named: tuple[str, str] | None = None) -> Joined:
        """Join the flight for `target`, starting it if none is under way. `named`: its cache
        key and name, when the caller has them already."""
        if named is None:
            key = self.key_for(target.upstream_url, target.range_header)
            named = key, storage_name(key)
        return await self._join(named, lambda flight: self._fly(flight, target))

    async def _join(
        self, named: tuple[str, str], start: Callable[[Flight], Awaitable[None]]
    ) -> Joined:
        key, name = named
        flight = self._flights.get(key)
        coalesced = flight is not None
        if flight is None:
            flight = Flight(key, name, Broadcast())
            self._flights[key] = flight
            flight.task = asyncio.create_task(start(flight))
        # Count this client in before awaiting, so a fill that completes in one go keeps its
        # bytes until every client counted in has read them.
        if flight.fill is not None:
            flight.fill.attach()
        else:
            flight.waiting += 1
        try:
            # The flight outlives any single client: a client that leaves does not cancel it.
            head = await flight.head.wait()
        except BaseException:
            if flight.fill is not None:
                flight.fill.detach()
            else:
                flight.waiting -= 1
            raise
        return Joined(flight, head, coalesced)

    async def close(self) -> None:
        tasks = [f.task for f in self._flights.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def produce(self, key: str, content_type: str, make: Produce) -> Joined:
        """Join the flight that makes the object `key` (not an upstream URL) with `make()`.

        Made objects share everything fetched ones have: one maker per key however many
        clients wait, across workers too, and the same cache admission.
        """
        return await self._join(
            (key, storage_name(key)), lambda flight: self._made(flight, key, content_type, make)
        )

    async def _fly(self, flight: Flight, target: Target) -> None:
        response: UpstreamResponse | None = None

        async def body(claim: Claim | None) -> None:
            nonlocal response
            started = time.monotonic()
            response = await self._client.open(
                target.upstream_url, target.grant.headers, range_header=target.range_header
            )
            self._metrics.upstream_seconds.observe(time.monotonic() - started)
            chunks = response.chunks().__aiter__()
            first = await _read_prefix(chunks, _SNIFF_BYTES)
            start = bytes(first[:_SNIFF_WINDOW])  # what tells a manifest or a media type
            kind = _manifest_kind(start)
            if kind is not None:
                if claim is not None and self._locks is not None:
                    # Manifests are small and rewritten per worker: others fetch their own.
                    await self._locks.publish(claim, state="manifest")
                payload = await _read_rest(first, chunks, self._settings.playlist_max_bytes)
                flight.head.set_result(Manifest(payload, response.url, kind))
                flight.lingers = True
                return
            headers = response.headers
            head = MediaHead(
                status=response.status,
                content_type=sniff_content_type(
                    start, headers.get("Content-Type"), target.upstream_url
                ),
                content_length=response.content_length,
                content_range=headers.get("Content-Range") if response.status == 206 else None,
                etag=headers.get("ETag"),
                last_modified=headers.get("Last-Modified"),
            )
            # A range request that upstream answered in full is the whole object.
            whole = response.status != 206 and target.range_header is not None
            key = self.key_for(target.upstream_url) if whole else flight.key
            await self._fill(flight, key, head, first, chunks, claim, response.hold_reading)

        try:
            await self._guarded(flight, body, _redact(target.upstream_url))
        finally:
            if response is not None:
                if flight.fill is not None and flight.fill.error is not None:
                    # An unfinished body must not be drained or reused: close the connection.
                    response.abort()
                else:
                    response.release()

    async def _made(self, flight: Flight, key: str, content_type: str, make: Produce) -> None:
        async def body(claim: Claim | None) -> None:
            data = await make()
            head = MediaHead(200, content_type, len(data), None, None, None)
            await self._fill(flight, key, head, data, _no_chunks(), claim)

        await self._guarded(flight, body, key)

    async def _guarded(
        self, flight: Flight, body: Callable[[Claim | None], Awaitable[None]], what: str
    ) -> None:
        """Run a flight's body: cache re-check, cross-worker lead, and every failure mapped."""
        claim: Claim | None = None
        try:
            if self._locks is not None:
                claim = await self._lead(flight, self._locks)
                if flight.head.done():
                    return
            # A client that missed the cache just before another flight for this object
            # committed it would otherwise fetch it again. Looked up once this worker leads:
            # a leader commits before it lets go of the lock, so a commit that came before
            # the claim is found here (looked up before the claim, it could slip between).
            # A claim that checked the index has looked already.
            if not self.finds_committed and await self._found(flight):
                return
            await body(claim)
        except GatewayError as exc:
            if not flight.head.done():
                flight.head.set_exception(exc)
            if flight.fill is not None and not flight.fill.done:
                log.warning("fill failed for %s: %s", what, exc.reason)
                flight.fill.finish(exc)
                flight.fill.discard_temp()
        except asyncio.CancelledError:
            error = UpstreamError("gateway shutting down", 503)
            if not flight.head.done():
                flight.head.set_exception(error)
            if flight.fill is not None and not flight.fill.done:
                flight.fill.finish(error)
                flight.fill.discard_temp()
            raise
        except Exception as exc:
            log.exception("unexpected fetch failure")
            error = UpstreamError(f"internal fetch error: {type(exc).__name__}", 500)
            if not flight.head.done():
                flight.head.set_exception(error)
            if flight.fill is not None and not flight.fill.done:
                flight.fill.finish(error)
                flight.fill.discard_temp()
        finally:
            if claim is not None and self._locks is not None:
                await self._locks.release(claim)
            if flight.lingers:
                asyncio.get_running_loop().call_later(MANIFEST_LINGER_SECONDS, self._forget, flight)
            else:
                self._forget(flight)

    async def _fill(
        self,
        flight: Flight,
        key: str,
        head: MediaHead,
        first: BodyChunk,
        chunks: AsyncIterator[BodyChunk],
        claim: Claim | None = None,
        hold_upstream: Callable[[], Callable[[], None]] | None = None,
    ) -> None:
        expected = head.content_length
        fill = flight.fill = Fill(
            self._cache.store.new_temp(), readers=flight.waiting, expected=expected
        )
        if first:
            fill.append(first)
        # The waiting clients send the head and the first chunk before more is read.
        resume_upstream = hold_upstream() if hold_upstream is not None else None
        try:
            flight.head.set_result(head)
            # Readers first: each chunk reaches them in memory and is written to disk once
            # they had their turn to send it (a chunk already buffered from upstream comes
            # back without a suspension, so without the yield a fast origin's whole body was
            # written before any waiting client got its first byte). The last chunk waits
            # for the commit instead (`Fill`), and nobody waits for it to be written.
            await asyncio.sleep(0)
        finally:
            if resume_upstream is not None:
                resume_upstream()
        fill.flush()  # creates the temp file, which the other workers are told of
        publishing = self._publish(claim, fill, head)
        self._metrics.fills_in_flight.inc()
        too_big = self._cache.max_object_bytes
        try:
            async for chunk in chunks:
                fill.append(chunk)
                if not fill.complete:
                    await asyncio.sleep(0)
                fill.flush()
                if fill.written > too_big and fill.readers == 0:
                    # Not going to be cached and nobody is reading: stop downloading it.
                    raise UpstreamError("uncacheable body abandoned by every client")
            if publishing is not None:
                await publishing
        except BaseException:
            if publishing is not None:
                publishing.cancel()  # the claim's release makes a late one a no-op anyway
            raise
        finally:
            self._metrics.fills_in_flight.dec()
            self._metrics.upstream_bytes.inc(fill.written)
        if fill.disk_failed is not None:
            self._cache.disk_refused(fill.disk_failed)
        if expected is not None and fill.written != expected:
            raise UpstreamError(f"upstream body was {fill.written} of {expected} bytes")
        cacheable = fill.on_disk and head.status in (200, 206)
        if cacheable:
            entry = new_entry(
                storage_name(key),
                key,
                fill.written,
                head.content_type,
                status=head.status,
                content_range=head.content_range,
                etag=head.etag,
                last_modified=head.last_modified,
            )
            await self._cache.admit(fill.temp, entry, _http_date(head.last_modified))
        else:
            fill.discard_temp()
        # Before waking the readers: a client that saw the end of the body and asks again at
        # once must find the committed entry, not this finished flight.
        self._forget(flight)
        fill.finish()

    def _publish(
        self, claim: Claim | None, fill: Fill, head: MediaHead
    ) -> asyncio.Task[None] | None:
        """Tell the other workers where this fill's bytes are, while the fill goes on.

        Sent after the readers' turn: building and sending the command before it delayed
        each cold miss's first byte by 0.1 ms with the index in Redis.
        """
        if claim is None or self._locks is None:
            return None
        shared = {"head": asdict(head), "temp": str(fill.temp)} if fill.on_disk else {}
        state = "filling" if shared else "nodisk"
        return asyncio.create_task(self._locks.publish(claim, state=state, **shared))

    async def _lead(self, flight: Flight, locks: FlightLocks) -> Claim | None:
        """The claim to lead this fill under; or the flight's head is set, because the
        object was committed or another worker's fill of it was followed."""
        for _ in range(3):
            claim = await locks.claim(flight.name)
            if isinstance(claim, Committed):
                if await self._found(flight, claim.entry):
                    return None
                continue  # the index named a file that is gone; the lookup dropped it
            if claim is None:
                if await self._follow(flight, locks):
                    return None
                continue  # the leader failed or died
            return claim
        return None  # lead without a lock rather than go round again

    async def _found(self, flight: Flight, known: Entry | None = None) -> bool:
        """Whether the object is committed (then the flight's head says where)."""
        stored = await self._cache.lookup(flight.name, known)
        if stored is None:
            return False
        flight.head.set_result(Stored(*stored))
        return True

    def _forget(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    async def _follow(self, flight: Flight, locks: FlightLocks) -> bool:
        """Stream another worker's fill of this object. False: lead it ourselves instead."""
        deadline = time.monotonic() + self._settings.upstream_read_timeout + LOCK_SECONDS
        while time.monotonic() < deadline:
            info = await locks.peek(flight.name)
            if info is None:
                # Committed, or else the leader failed or died: take over.
                return await self._found(flight)
            if info.get("state") in ("manifest", "nodisk"):
                return False
            if "head" in info and "temp" in info:
                try:
                    remote = RemoteFill(
                        Path(info["temp"]), self._settled(flight.name), readers=flight.waiting
                    )
                except FileNotFoundError:
                    await asyncio.sleep(0.01)  # renamed into place a moment ago: peek again
                    continue
                flight.fill = remote
                flight.head.set_result(MediaHead(**info["head"]))
                await remote.follow(self._lock_held(locks, flight.name, info["token"]))
                return True
            await asyncio.sleep(0.01)
        raise UpstreamTimeout("waited too long for another worker's upstream fetch")

    def _settled(self, name: str) -> Callable[[], Awaitable[int | None]]:
        async def settle() -> int | None:
            stored = await self._cache.lookup(name)
            return stored[0].size if stored is not None else None

        return settle

    @staticmethod
    def _lock_held(locks: FlightLocks, name: str, token: str) -> Callable[[], Awaitable[bool]]:
        async def held() -> bool:
            info = await locks.peek(name)
            return info is not None and info.get("token") == token

        return held


async def _no_chunks() -> AsyncIterator[BodyChunk]:
    return
    yield


async def _read_prefix(chunks: AsyncIterator[BodyChunk], size: int) -> BodyChunk:
    """At least `size` bytes from the start of the body (less if it is shorter). A first
    chunk that has them is passed on as it is: it can be 256 KB, and not copying it keeps
    page faults off the way to a miss's first byte."""
    parts: list[BodyChunk] = []
    total = 0
    while total < size:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        parts.append(chunk)
        total += len(chunk)
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


async def _read_rest(first: BodyChunk, chunks: AsyncIterator[BodyChunk], limit: int) -> bytes:
    parts = [first]
    size = len(first)
    if size > limit:
        raise UpstreamError(f"playlist larger than {limit} bytes")
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise UpstreamError(f"playlist larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _manifest_kind(head: bytes) -> str | None:
    if hls.is_playlist(head):
        return "hls"
    if dash.is_mpd(head):
        return "dash"
    return None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _redact(url: str) -> str:
    """Log lines name the upstream path, never its query (which often carries credentials)."""
    return url.split("?", 1)[0]
