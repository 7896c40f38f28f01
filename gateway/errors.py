"""Typed errors, each carrying the HTTP status and one-line reason a client sees."""

from __future__ import annotations


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of `exc`'s text (its type's name if it has none), at most `limit`
    characters: what a log line or a client's reason can carry."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


class GatewayError(Exception):
    """An error with a client-facing status and a one-line reason."""

    status: int = 500

    def __init__(
        self, reason: str, status: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        # Headers the client needs with the error, e.g. Retry-After from an upstream 429/503.
        self.headers = headers or {}
        if status is not None:
            self.status = status


class BadRequest(GatewayError):
    status = 400


class Forbidden(GatewayError):
    status = 403


class Gone(GatewayError):
    status = 410


class NotFound(GatewayError):
    status = 404


class UpstreamError(GatewayError):
    """The upstream failed or refused; status already mapped (404 stays 404, 5xx → 502)."""

    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class Busy(GatewayError):
    """More concurrent client requests than the gateway is configured to hold."""

    status = 503


class ForbiddenUpstream(GatewayError):
    """The upstream resolves to an address the gateway will not connect to."""

    status = 403
