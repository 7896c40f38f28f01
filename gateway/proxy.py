"""`/p/<token>/<rest>`: playlists rewritten, segments from the cache or a single-flight fill."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from gateway.answers import Answer, Conditions
from gateway.cache.entry import Entry
from gateway.cache.keys import storage_name
from gateway.cache.segments import SegmentCache
from gateway.errors import Forbidden, GatewayError, NotFound
from gateway.fetcher import Fetcher, Joined, Manifest, Produce, Stored, Target
from gateway.links import PREFIX, open_token
from gateway.manifests import ManifestService
from gateway.metrics import Metrics
from gateway.prefetch import Prefetcher
from gateway.recent import put_newest
from gateway.serve import (
    accel_answer,
    as_response,
    hit_response,
    manifest_answer,
    memory_answer,
    stream_response,
)
from gateway.signing import Grant, Signer
from playlists import hls
from playlists.errors import PathEscapeError, PlaylistError
from playlists.urls import normalize_rest

Recover = Callable[[Grant, str], Awaitable[tuple[Grant, str] | None]]
_SINGLE_RANGE = re.compile(r"^bytes=(\d+-\d*|-\d+)$")
_ROUTES_REMEMBERED = 16_384
# Answers kept per cached playlist copy: one per kind of request players make (plain,
# gzip, a revalidation), not one per client validator.
_ANSWERS_PER_COPY = 8


@dataclass(frozen=True, slots=True)
class Hit:
    """A committed object, to be sent from its file."""

    entry: Entry
    path: Path


Outcome = Answer | Hit | Joined


@dataclass(frozen=True, slots=True)
class Route:
    """What a verified gateway path means."""

    grant: Grant
    rest: str
    url: str  # upstream
    key: str  # the cache key of the whole object
    name: str  # its cache name
    expires: float  # when the grant does (unix time)


class ProxyHandler:
    def __init__(
        self,
        signer: Signer,
        cache: SegmentCache,
        fetcher: Fetcher,
        manifests: ManifestService,
        prefetcher: Prefetcher,
        recover: Recover | None = None,
        accel_prefix: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._signer = signer
        self._cache = cache
        self._fetcher = fetcher
        self._manifests = manifests
        self._prefetcher = prefetcher
        self._recover = recover
        self._accel_prefix = accel_prefix
        self._metrics = metrics or Metrics()
        self._routes: dict[str, Route] = {}
        # Per object, the X-Accel answer made for the entry the index last confirmed.
        self._accel_answers: dict[str, tuple[Entry, Answer]] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path
        conditions = Conditions.of(request)
        outcome = await self.outcome(raw, self.route(raw), conditions)
        if isinstance(outcome, Answer):
            return as_response(outcome)
        if isinstance(outcome, Hit):
            return await self._hit(request, outcome, conditions)
        response = await stream_response(request, outcome)
        self.count_streamed(outcome, response.body_length)
        return response

    def route(self, raw: str) -> Route:
        """What the gateway path `raw` means (raises what is wrong with it)."""
        route = self._routes.get(raw)
        if route is None or route.expires <= time.time():
            route = self._route(raw)
        return route

    async def outcome(self, raw: str, route: Route, conditions: Conditions) -> Outcome:
        """What to answer `GET raw`: an answer made already, a cached object to send, or a
        flight to stream. Both the full stack and the connection's own lane answer from it."""
        grant, rest, upstream_url, whole_name = route.grant, route.rest, route.url, route.name
        held = self._from_memory(raw, route, conditions)
        if held is not None:
            return held
        self._prefetcher.segment_requested(upstream_url, whole_name)

        range_header = _usable_range(conditions.range)
        if range_header is not None:
            # A cached whole object answers any range itself.
            whole = await self._cache.lookup(whole_name)
            if whole is not None:
                return Hit(*whole)
        if range_header is None:
            key, name = route.key, whole_name
        else:
            key = self._fetcher.key_for(upstream_url, range_header)
            name = storage_name(key)
        # An object whose flight is under way is not committed yet: join without asking the
        # index (a round trip to Redis for every client of a hot live segment). Nor is it
        # asked when the flight's claim finds a committed object itself, unless the entry
        # was confirmed a moment ago (then the lookup needs no round trip).
        fetcher = self._fetcher
        if not fetcher.in_flight(key) and (
            not fetcher.finds_committed or self._cache.recent(name) is not None
        ):
            hit = await self._cache.lookup(name)
            if hit is not None:
                return Hit(*hit)

        try:
            joined = await self._join(Target(grant, upstream_url, range_header), key, name)
        except GatewayError:
            stale = self._manifests.fallback(raw)
            if stale is None:
                raise
            self._metrics.count(self._metrics.cache_results, "playlist", "STALE")
            return manifest_answer(stale, "STALE", conditions)
        if isinstance(joined.head, Stored):
            joined.release()
            return Hit(joined.head.entry, joined.head.path)
        if isinstance(joined.head, Manifest):
            rewritten = self._manifests.rewrite(
                raw,
                joined.head,
                grant=grant,
                requested_url=upstream_url,
                request_rest=rest,
            )
            self._follow(joined.head, grant, upstream_url)
            self._metrics.count(self._metrics.cache_results, "playlist", joined.state)
            return manifest_answer(rewritten, joined.state, conditions)
        self._metrics.count(self._metrics.cache_results, "segment", joined.state)
        return joined

    def count_streamed(self, joined: Joined, sent: int) -> None:
        self._metrics.count(self._metrics.served_bytes, joined.state, amount=sent)

    async def serve_made(
        self, request: web.Request, key: str, content_type: str, make: Produce
    ) -> web.StreamResponse:
        """An object the gateway makes itself (a segment cut from a file), cached like any."""
        name = storage_name(key)
        conditions = Conditions.of(request)
        if self._accel_prefix is None:
            held = self._held_segment(name, conditions)
            if held is not None:
                return as_response(held)
        hit = await self._cache.lookup(name)
        if hit is not None:
            return await self._hit(request, Hit(*hit), conditions)
        joined = await self._fetcher.produce(key, content_type, make)
        if isinstance(joined.head, Stored):
            joined.release()
            return await self._hit(request, Hit(joined.head.entry, joined.head.path), conditions)
        self._metrics.count(self._metrics.cache_results, "segment", joined.state)
        return await stream_response(request, joined)

    def answer_now(
        self, raw_path: str, conditions: Conditions, max_body: int | None = None
    ) -> Answer | None:
        """The answer if it is in memory (and its body at most `max_body`) and the path was
        verified before; else None, and the request takes the full path (which verifies it)."""
        route = self._routes.get(raw_path)
        if route is None or route.expires <= time.time():
            return None
        return self._from_memory(raw_path, route, conditions, max_body)

    def _from_memory(
        self, raw: str, route: Route, conditions: Conditions, max_body: int | None = None
    ) -> Answer | None:
        """A cached rewritten playlist, or a segment the index vouched for moments ago and
        held in memory or already mapped: no I/O, no await."""
        cached = self._manifests.cached(raw)
        if cached is not None:
            if max_body is not None and len(cached.body) > max_body:
                return None
            self._prefetcher.playlist_requested(route.url)
            self._metrics.count(self._metrics.cache_results, "playlist", "HIT")
            answer = cached.hit_answers.get(conditions)
            if answer is None:
                answer = manifest_answer(cached, "HIT", conditions)
                if len(cached.hit_answers) < _ANSWERS_PER_COPY:
                    answer = cached.hit_answers[conditions] = replace(answer, reused=True)
            return answer
        held = self._held_segment(route.name, conditions, max_body)
        if held is not None:
            self._prefetcher.segment_requested(route.url, route.name)
        return held

    def _held_segment(
        self, name: str, conditions: Conditions, max_body: int | None = None
    ) -> Answer | None:
        entry = self._cache.recent(name)
        if entry is None or (max_body is not None and entry.size > max_body):
            return None
        if self._accel_prefix is not None and not self._cache.still_on_disk(entry):
            return None
        return self._stored_answer(entry, None, conditions)

    def hit_answer(self, hit: Hit, conditions: Conditions) -> Answer | None:
        """A cached object's answer made in memory (mapped, or for nginx to send), or None
        when only a response that reads the file will do (`_hit` makes that one)."""
        return self._stored_answer(hit.entry, hit.path, conditions)

    def _stored_answer(
        self, entry: Entry, path: Path | None, conditions: Conditions
    ) -> Answer | None:
        """`entry`'s answer for nginx to send, or from memory (held, or mapped from `path`
        when given), counted as a hit; None when only reading the file will do."""
        if entry.status != 200:
            return None
        if self._accel_prefix is not None:
            answer = self._accel_answer(entry, self._accel_prefix)
        else:
            held = self._cache.held(entry.name, path, entry.size)
            if held is None:
                return None
            answer = memory_answer(entry, held, conditions)
        self._count_hit(entry)
        return answer

    def _count_hit(self, entry: Entry) -> None:
        self._metrics.count(self._metrics.cache_results, "segment", "HIT")
        self._metrics.count(self._metrics.served_bytes, "HIT", amount=entry.size)

    async def _hit(
        self, request: web.Request, hit: Hit, conditions: Conditions
    ) -> web.StreamResponse:
        answer = self.hit_answer(hit, conditions)
        if answer is not None:
            return as_response(answer)
        self._count_hit(hit.entry)
        return await hit_response(hit.entry, hit.path)

    def _accel_answer(self, entry: Entry, prefix: str) -> Answer:
        known = self._accel_answers.get(entry.name)
        if known is not None and known[0] is entry:
            return known[1]
        location = prefix + self._cache.store.relative_of(entry.name)
        answer = replace(accel_answer(entry, location), reused=True)
        put_newest(self._accel_answers, entry.name, (entry, answer), _ROUTES_REMEMBERED)
        return answer

    async def _join(self, target: Target, key: str, name: str) -> Joined:
        try:
            return await self._fetcher.join(target, (key, name))
        except GatewayError as exc:
            # An expired signature on a URL from a page extraction: extract again, retry once.
            if exc.status not in (403, 410) or self._recover is None:
                raise
            moved = await self._recover(target.grant, target.upstream_url)
            if moved is None:
                raise
            grant, url = moved
            return await self._fetcher.join(Target(grant, url, target.range_header))

    def _follow(self, manifest: Manifest, grant: Grant, upstream_url: str) -> None:
        """Hand a fresh media playlist to the prefetcher."""
        if not self._prefetcher.enabled or manifest.kind != "hls":
            return
        info = hls.inspect(manifest.body)
        if info.is_master:
            return
        try:
            segments = hls.segment_urls(manifest.body, base_url=manifest.final_url)
        except PlaylistError:
            return
        self._prefetcher.playlist_fetched(upstream_url, grant, segments, live=info.is_live)

    def _route(self, raw: str) -> Route:
        """Token → grant; the rest must stay inside the granted directory. Remembered per raw
        path until the grant expires, so a hit pays for neither the signature nor the key."""
        path, sep, query = raw[len(PREFIX) :].partition("?")
        token, slash, rest = path.partition("/")
        if not slash:
            raise NotFound("a gateway URL needs a path after the token")
        grant = open_token(self._signer, token, mode="")
        try:
            clean = normalize_rest(rest)
        except PathEscapeError:
            raise Forbidden("path leaves the granted directory") from None
        upstream_url = grant.directory + clean + sep + query
        key = self._fetcher.key_for(upstream_url)
        route = Route(
            grant,
            rest + sep + query,
            upstream_url,
            key,
            storage_name(key),
            math.inf if grant.expires is None else float(grant.expires),
        )
        put_newest(self._routes, raw, route, _ROUTES_REMEMBERED)
        return route


def _usable_range(value: str | None) -> str | None:
    """One byte range, as players send it; anything else is served whole (RFC 9110 allows it)."""
    if value is None:
        return None
    value = value.strip().replace(" ", "")
    if value == "bytes=0-":
        # The whole object (ffmpeg and browsers ask so): share the whole-object fill and
        # cache entry instead of fetching and storing the same bytes as a "range".
        return None
    return value if _SINGLE_RANGE.match(value) else None
