"""The front door every request passes: load shedding, request ids, CORS, error mapping."""

from __future__ import annotations

import itertools
import logging
import os
import re

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.answers import Answer
from gateway.errors import GatewayError
from gateway.metrics import Metrics, route_of
from gateway.settings import Settings
from gateway.upstream import REQUEST_ID

log = logging.getLogger("gateway")

_EXPOSE = "Content-Length, Content-Range, Accept-Ranges, Content-Type, ETag, Last-Modified, X-Cache"
_ALLOW_HEADERS = "Range, If-None-Match, If-Modified-Since, If-Range, Authorization, Content-Type"


_ERROR_HEADERS = {"Cache-Control": "no-store", "Content-Type": "text/plain; charset=utf-8"}


def error_response(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=_ERROR_HEADERS)


def error_answer(exc: GatewayError) -> Answer:
    """`exc` as the one-line answer the middleware gives it (for the connection's own lane)."""
    body = (exc.reason + "\n").encode("utf-8")
    return Answer(exc.status, {**_ERROR_HEADERS, **exc.headers}, body)


_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIds:
    """Fresh request ids: a random per-process prefix and a counter (32 hex digits), unique
    across workers and nodes without a random draw per request."""

    def __init__(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._next = itertools.count(1).__next__

    def new(self) -> str:
        return f"{self._prefix}{self._next() & 0xFFFFFFFFFFFF:012x}"


def allow_headers(allowed: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": allowed, "Access-Control-Expose-Headers": _EXPOSE}


class Cors:
    """CORS for players on other origins: they send `Range` and read `Content-Range`."""

    def __init__(self, settings: Settings) -> None:
        self._any = "*" in settings.cors_origins
        self._allowed = frozenset(settings.cors_origins)

    @property
    def any_origin(self) -> bool:
        return self._any

    def allow_origin(self, origin: str | None) -> str | None:
        if self._any:
            return "*"
        return origin if origin in self._allowed else None

    def decorate(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        allowed = self.allow_origin(request.headers.get("Origin"))
        if allowed is None:
            return
        response.headers.update(allow_headers(allowed))
        if allowed != "*":
            response.headers.add("Vary", "Origin")

    @staticmethod
    def preflight(request: web.Request) -> web.Response:
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", _ALLOW_HEADERS
        )
        response.headers["Access-Control-Max-Age"] = "86400"
        return response


class FrontDoor:
    """What every request passes through, in one middleware: load shedding (at most
    `max_client_requests` in progress, then a quick 503 instead of a pile-up), the request
    id, CORS preflight, errors mapped to one-line answers, and the request count.

    One layer rather than five: each aiohttp middleware layer costs a few microseconds, and
    a cached playlist is answered in about thirty.
    """

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._limit = settings.max_client_requests
        self._metrics = metrics
        self._cors = Cors(settings)
        self._ids = RequestIds()
        self.active = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = self.request_id(request.headers.get("X-Request-Id"))
        REQUEST_ID.set(request_id)
        request["request_id"] = request_id
        if self.full:
            return self._counted(request, error_response(503, "gateway busy, retry shortly"))
        self.active += 1
        try:
            if request.method == "OPTIONS":
                response: web.StreamResponse = self._cors.preflight(request)
            else:
                response = await handler(request)
        except GatewayError as exc:
            self.refused(request.method, request.path, exc)
            response = error_response(exc.status, exc.reason)
            response.headers.update(exc.headers)
        except web.HTTPException as exc:
            self._count(request, exc.status)
            raise
        except (ConnectionError, TimeoutError):
            self._count(request, 500)
            raise
        except Exception:
            log.exception("unhandled error for %s %s", request.method, request.path[:80])
            response = error_response(500, "internal error")
        finally:
            self.active -= 1
        return self._counted(request, response)

    async def on_prepare(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Headers every response carries, streamed ones (sent mid-handler) included."""
        request_id = request.get("request_id")
        if request_id:
            response.headers["X-Request-Id"] = request_id
        self._cors.decorate(request, response)

    @staticmethod
    def refused(method: str, path: str, exc: GatewayError) -> None:
        log.info("%s %s -> %d %s", method, path[:80], exc.status, exc.reason)

    @property
    def full(self) -> bool:
        """Whether a request arriving now is shed (answered 503)."""
        return self.active >= self._limit

    @property
    def cors(self) -> Cors:
        return self._cors

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    def request_id(self, offered: str | None) -> str:
        """The client's id when it is a sane one (to follow a request across hops), else new."""
        if offered is not None and _REQUEST_ID_OK.match(offered):
            return offered
        return self._ids.new()

    def count(self, raw_path: str, status: int) -> None:
        self._metrics.count(self._metrics.requests, route_of(raw_path), str(status))

    def _counted(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        self._count(request, response.status)
        return response

    def _count(self, request: web.Request, status: int) -> None:
        self.count(request.raw_path, status)
