"""Web pages to streams with yt-dlp: extraction (no download), cached and single-flight.

yt-dlp is synchronous and slow (it fetches and parses the page), so it runs in a worker
thread; one extraction per page and format at a time, however many clients ask. Results are
cached until the extracted URLs themselves would expire (read from yt-dlp's fields or an
`expire=`-style query parameter), or `GATEWAY_RESOLVE_TTL`, whichever is sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from redis.exceptions import RedisError

from gateway.broadcast import Broadcast
from gateway.cache.redis_connect import connect
from gateway.errors import BadRequest, UpstreamError, one_line
from gateway.settings import Settings
from gateway.signing import Headers

log = logging.getLogger("gateway.resolve")

# Headers yt-dlp asks for that matter upstream; the rest (Accept, Sec-Fetch-*) are browser noise.
_BOUND_HEADERS = ("User-Agent", "Referer", "Origin", "Cookie", "Authorization")
_EXPIRY_PARAMS = ("expire", "expires", "exp", "Expires")
_HLS_PROTOCOLS = frozenset({"m3u8", "m3u8_native"})
_DASH_PROTOCOLS = frozenset({"http_dash_segments", "dash"})
_ERROR_TAIL = re.compile(r"\s*;\s*please report this issue.*$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class Format:
    format_id: str
    url: str
    protocol: str
    ext: str | None = None
    width: int | None = None
    height: int | None = None
    vcodec: str | None = None
    acodec: str | None = None
    tbr: float | None = None
    headers: Headers = ()

    @property
    def kind(self) -> str:
        """`hls`, `dash` or `progressive`: how the gateway serves it."""
        if self.protocol in _HLS_PROTOCOLS:
            return "hls"
        if self.protocol in _DASH_PROTOCOLS:
            return "dash"
        return "progressive"

    @property
    def has_video(self) -> bool:
        return self.vcodec != "none"

    @property
    def has_audio(self) -> bool:
        return self.acodec != "none"

    @property
    def resolution(self) -> str | None:
        return f"{self.width}x{self.height}" if self.width and self.height else None

    def describe(self) -> dict[str, object]:
        return {
            "format_id": self.format_id,
            "protocol": self.protocol,
            "ext": self.ext,
            "resolution": self.resolution,
            "vcodec": self.vcodec,
            "acodec": self.acodec,
            "bitrate_kbps": self.tbr,
        }


@dataclass(frozen=True, slots=True)
class Extraction:
    page_url: str
    title: str | None
    duration: float | None
    is_live: bool
    thumbnail: str | None
    formats: tuple[Format, ...]
    selected: tuple[Format, ...]  # what the format spec chose: one format, or video + audio
    expires_at: float


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Extraction]
    waiters: int = 0
    started: float = field(default_factory=time.monotonic)


class Resolver:
    """Extractions by (page URL, format spec); one yt-dlp run at a time per key.

    Results live in process memory and, when Redis is configured, in Redis too, so that every
    worker and node reuses one extraction until it expires.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._cache: dict[tuple[str, str], Extraction] = {}
        self._pending: dict[tuple[str, str], Broadcast[Extraction]] = {}
        # yt-dlp blocks; a pool of its own keeps it from starving the default executor.
        self._executor = ThreadPoolExecutor(
            max_workers=settings.resolve_concurrency, thread_name_prefix="yt-dlp"
        )
        self._shared = connect(settings.redis_url) if settings.redis_url else None
        self._shared_prefix = f"{settings.redis_prefix}:extraction:"
        self.extractions = 0  # yt-dlp runs so far, for metrics and tests

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._shared is not None:
            await self._shared.aclose()

    async def resolve(self, page_url: str, format_spec: str | None = None) -> Extraction:
        key = (page_url, format_spec or self._settings.resolve_format)
        cached = self._cache.get(key)
        if cached is not None and cached.expires_at > time.time():
            return cached
        shared = await self._load_shared(key)
        if shared is not None:
            self._cache[key] = shared
            return shared
        return await self._extract_once(key)

    async def refresh(self, stale: Extraction, format_spec: str | None = None) -> Extraction:
        """Re-extract after upstream refused URLs from `stale`; concurrent callers share one run."""
        key = (stale.page_url, format_spec or self._settings.resolve_format)
        current = self._cache.get(key)
        if current is not None and current is not stale and current.expires_at > time.time():
            return current  # someone else already refreshed it
        self._cache.pop(key, None)
        await self._drop_shared(key)
        return await self._extract_once(key)

    async def _extract_once(self, key: tuple[str, str]) -> Extraction:
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = Broadcast()
            asyncio.create_task(self._run(key, pending))  # noqa: RUF006 - what it awaits holds it
        return await pending.wait()

    async def _run(self, key: tuple[str, str], pending: Broadcast[Extraction]) -> None:
        page_url, spec = key
        try:
            self.extractions += 1
            loop = asyncio.get_running_loop()
            info = await asyncio.wait_for(
                loop.run_in_executor(
                    self._executor, _extract, page_url, spec, self._ytdlp_options(spec)
                ),
                self._settings.resolve_timeout,
            )
            extraction = _to_extraction(page_url, info, self._settings.resolve_ttl)
            self._cache[key] = extraction
            await self._store_shared(key, extraction)
            pending.set_result(extraction)
        except TimeoutError:
            pending.set_exception(UpstreamError("page extraction timed out", 504))
        except UpstreamError as exc:
            pending.set_exception(exc)
        except Exception as exc:  # yt-dlp raises many kinds; all mean "no stream here"
            log.debug("extraction failed for %s: %s", page_url.split("?", 1)[0], _one_line(exc))
            # 422: the page was reachable but holds nothing playable (or yt-dlp cannot read it).
            reason = f"could not extract a stream: {_one_line(exc)}"
            pending.set_exception(UpstreamError(reason, 422))
        finally:
            self._pending.pop(key, None)

    def _ytdlp_options(self, spec: str) -> dict[str, Any]:
        options: dict[str, Any] = {
            "quiet": True,
            "no_warnings": True,
            "skip_download": True,
            "noplaylist": True,
            "format": spec,
            "socket_timeout": self._settings.upstream_connect_timeout,
            "noprogress": True,
            "cachedir": False,
            "logger": _QuietLogger(),
        }
        if self._settings.resolve_cookies_file:
            options["cookiefile"] = str(self._settings.resolve_cookies_file)
        if self._settings.resolve_extractor_args:
            options["extractor_args"] = self._settings.resolve_extractor_args
        if self._settings.egress_proxy:
            # The same egress as the segment fetches: many extracted URLs are bound to the IP
            # that resolved them.
            options["proxy"] = self._settings.egress_proxy
        return options

    async def _load_shared(self, key: tuple[str, str]) -> Extraction | None:
        if self._shared is None:
            return None
        try:
            raw = await self._shared.get(self._shared_key(key))
        except RedisError:
            return None
        if not raw:
            return None
        extraction = _from_json(raw)
        return extraction if extraction.expires_at > time.time() else None

    async def _store_shared(self, key: tuple[str, str], extraction: Extraction) -> None:
        if self._shared is None:
            return
        seconds = int(extraction.expires_at - time.time())
        if seconds > 0:
            with contextlib.suppress(RedisError):
                await self._shared.set(self._shared_key(key), _to_json(extraction), ex=seconds)

    async def _drop_shared(self, key: tuple[str, str]) -> None:
        if self._shared is not None:
            with contextlib.suppress(RedisError):
                await self._shared.delete(self._shared_key(key))

    def _shared_key(self, key: tuple[str, str]) -> str:
        digest = hashlib.sha256("\n".join(key).encode()).hexdigest()
        return self._shared_prefix + digest


def _to_json(extraction: Extraction) -> str:
    return json.dumps(asdict(extraction))


def _from_json(raw: bytes | str) -> Extraction:
    data = json.loads(raw)

    def formats(items: list[dict[str, Any]]) -> tuple[Format, ...]:
        return tuple(
            Format(**{**item, "headers": tuple(tuple(h) for h in item["headers"])})
            for item in items
        )

    return Extraction(
        **{
            **data,
            "formats": formats(data["formats"]),
            "selected": formats(data["selected"]),
        }
    )


class _QuietLogger:
    """yt-dlp prints its errors to stderr itself; the gateway reports them as one line."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def info(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)


def _extract(page_url: str, spec: str, options: dict[str, Any]) -> dict[str, Any]:
    import yt_dlp

    with yt_dlp.YoutubeDL(options) as ydl:
        info = ydl.extract_info(page_url, download=False)
        if info is None:
            raise UpstreamError("the page has no stream")
        if info.get("_type") == "playlist":
            entries = [entry for entry in info.get("entries") or [] if entry]
            if not entries:
                raise UpstreamError("the page has no stream")
            info = entries[0]
        return dict(ydl.sanitize_info(info))


def _to_extraction(page_url: str, info: Mapping[str, Any], ttl: float) -> Extraction:
    formats = tuple(_format(f) for f in info.get("formats") or [] if f.get("url"))
    requested = info.get("requested_formats") or [info]
    selected = tuple(_format(f) for f in requested if f.get("url"))
    if not selected:
        raise UpstreamError("the page has no playable format")
    now = time.time()
    expiries = [e for e in (_url_expiry(f.url) for f in selected) if e is not None]
    # Refresh a little before the URLs die, so a player never meets the expiry itself.
    expires_at = min([now + ttl, *(e - 30 for e in expiries)])
    return Extraction(
        page_url=page_url,
        title=info.get("title"),
        duration=_number(info.get("duration")),
        is_live=bool(info.get("is_live")),
        thumbnail=info.get("thumbnail"),
        formats=formats or selected,
        selected=selected,
        expires_at=max(expires_at, now + 5),
    )


def _format(raw: Mapping[str, Any]) -> Format:
    # An HLS format's `url` is its media playlist; a DASH format can only be played through
    # its MPD, so that is what the gateway serves.
    url = raw.get("manifest_url") if raw.get("protocol") in _DASH_PROTOCOLS else None
    headers = raw.get("http_headers") or {}
    return Format(
        format_id=str(raw.get("format_id") or "0"),
        url=str(url or raw["url"]),
        protocol=str(raw.get("protocol") or "http"),
        ext=raw.get("ext"),
        width=raw.get("width"),
        height=raw.get("height"),
        vcodec=raw.get("vcodec"),
        acodec=raw.get("acodec"),
        tbr=_number(raw.get("tbr")),
        headers=tuple((name, str(headers[name])) for name in _BOUND_HEADERS if name in headers),
    )


def _url_expiry(url: str) -> float | None:
    for name, value in parse_qsl(urlsplit(url).query):
        if name in _EXPIRY_PARAMS and value.isdigit():
            return float(value)
    return None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _one_line(exc: BaseException) -> str:
    """yt-dlp's message without its "ERROR:" prefix and its report-a-bug tail."""
    return re.sub(r"^ERROR:\s*", "", _ERROR_TAIL.sub("", one_line(exc, limit=1000)))[:200]


def check_page_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url) or any(ch.isspace() for ch in url):
        raise BadRequest("url must be an http(s) page URL")
    return url
