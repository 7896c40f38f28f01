"""Error mapping and CORS: applied to every response the gateway writes."""

from __future__ import annotations

import logging
import re
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import GatewayError
from gateway.settings import Settings
from gateway.upstream import REQUEST_ID

log = logging.getLogger("gateway")

_EXPOSE = "Content-Length, Content-Range, Accept-Ranges, Content-Type, ETag, Last-Modified, X-Cache"
_ALLOW_HEADERS = "Range, If-None-Match, If-Modified-Since, If-Range, Authorization, Content-Type"


def error_response(status: int, reason: str) -> web.Response:
    return web.Response(
        status=status,
        text=reason + "\n",
        headers={"Cache-Control": "no-store", "Content-Type": "text/plain; charset=utf-8"},
    )


_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take the caller's X-Request-Id (nginx sets one) or make one; send it back and upstream."""
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID_OK.match(offered) else uuid.uuid4().hex
    REQUEST_ID.set(request_id)
    request["request_id"] = request_id
    return await handler(request)


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """On prepare, so that streamed responses (headers sent mid-handler) carry it too."""
    request_id = request.get("request_id")
    if request_id:
        response.headers["X-Request-Id"] = request_id


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        log.info("%s %s -> %d %s", request.method, request.path[:80], exc.status, exc.reason)
        response = error_response(exc.status, exc.reason)
        response.headers.update(exc.headers)
        return response
    except web.HTTPException:
        raise
    except (ConnectionError, TimeoutError):
        raise
    except Exception:
        log.exception("unhandled error for %s %s", request.method, request.path[:80])
        return error_response(500, "internal error")


class Cors:
    """CORS for players on other origins: they send `Range` and read `Content-Range`."""

    def __init__(self, settings: Settings) -> None:
        self._any = "*" in settings.cors_origins
        self._allowed = frozenset(settings.cors_origins)

    def allow_origin(self, request: web.BaseRequest) -> str | None:
        if self._any:
            return "*"
        origin = request.headers.get("Origin")
        return origin if origin in self._allowed else None

    async def on_prepare(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        allowed = self.allow_origin(request)
        if allowed is None:
            return
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Access-Control-Expose-Headers"] = _EXPOSE
        if allowed != "*":
            response.headers.add("Vary", "Origin")

    @web.middleware
    async def preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "OPTIONS":
            return await handler(request)
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", _ALLOW_HEADERS
        )
        response.headers["Access-Control-Max-Age"] = "86400"
        return response


class ConcurrencyLimit:
    """At most `limit` client requests in progress; beyond that a quick 503, not a pile-up."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.active = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.active >= self._limit:
            return error_response(503, "gateway busy, retry shortly")
        self.active += 1
        try:
            return await handler(request)
        finally:
            self.active -= 1
