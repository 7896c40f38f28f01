"""Access logs: the usual text line, or one JSON object per request for log pipelines."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway.metrics import route_of


class JsonAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        record = {
            "remote": request.remote,
            "method": request.method,
            # Route family and file name only: the token and query may carry credentials.
            "route": route_of(request.path),
            "file": request.path.rsplit("/", 1)[-1][:120],
            "status": response.status,
            "bytes": response.body_length,
            "seconds": round(time, 6),
            "cache": response.headers.get("X-Cache"),
            "request_id": response.headers.get("X-Request-Id"),
            "user_agent": request.headers.get("User-Agent"),
        }
        self.logger.info(json.dumps(record, separators=(",", ":")))


class TextAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s /%s/…/%s" %d %d %.4fs %s %s',
            request.remote,
            request.method,
            route_of(request.path),
            request.path.rsplit("/", 1)[-1][:120],
            response.status,
            response.body_length,
            time,
            response.headers.get("X-Cache", "-"),
            response.headers.get("X-Request-Id", "-"),
        )


def access_logging(kind: str) -> dict[str, object]:
    """Keyword arguments for `web.run_app`/`AppRunner` for the configured access log."""
    if kind == "off":
        return {"access_log": None}
    logger = logging.getLogger("gateway.access")
    logger.setLevel(logging.INFO)
    return {
        "access_log": logger,
        "access_log_class": JsonAccessLogger if kind == "json" else TextAccessLogger,
    }
