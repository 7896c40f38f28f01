"""Access logs: the usual text line, or one JSON object per request for log pipelines."""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway.metrics import route_of


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One answered request, as the logs tell it."""

    remote: str | None
    method: str
    path: str
    status: int
    size: int
    seconds: float
    cache: str | None
    request_id: str | None
    user_agent: str | None

    @classmethod
    def of(
        cls, request: web.BaseRequest, response: web.StreamResponse, seconds: float
    ) -> AccessRecord:
        return cls(
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            seconds,
            response.headers.get("X-Cache"),
            response.headers.get("X-Request-Id"),
            request.headers.get("User-Agent"),
        )

    @property
    def route(self) -> str:
        # Route family and file name only: the token and query may carry credentials.
        return route_of(self.path)

    @property
    def file(self) -> str:
        return self.path.rsplit("/", 1)[-1][:120]


class GatewayAccessLogger(AbstractAccessLogger):
    """Logs aiohttp's exchanges and the fast lane's (which has no aiohttp objects) alike."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.write(AccessRecord.of(request, response, time))

    @abstractmethod
    def write(self, record: AccessRecord) -> None: ...


class JsonAccessLogger(GatewayAccessLogger):
    def write(self, record: AccessRecord) -> None:
        fields = {
            "remote": record.remote,
            "method": record.method,
            "route": record.route,
            "file": record.file,
            "status": record.status,
            "bytes": record.size,
            "seconds": round(record.seconds, 6),
            "cache": record.cache,
            "request_id": record.request_id,
            "user_agent": record.user_agent,
        }
        self.logger.info(json.dumps(fields, separators=(",", ":")))


class TextAccessLogger(GatewayAccessLogger):
    def write(self, record: AccessRecord) -> None:
        self.logger.info(
            '%s "%s /%s/…/%s" %d %d %.4fs %s %s',
            record.remote,
            record.method,
            record.route,
            record.file,
            record.status,
            record.size,
            record.seconds,
            record.cache or "-",
            record.request_id or "-",
        )


def access_logging(kind: str) -> dict[str, object]:
    """Keyword arguments for the app runner for the configured access log."""
    if kind == "off":
        return {"access_log": None}
    logger = logging.getLogger("gateway.access")
    logger.setLevel(logging.INFO)
    return {
        "access_log": logger,
        "access_log_class": JsonAccessLogger if kind == "json" else TextAccessLogger,
    }
