"""One-line answers to requests that never reach a handler (unparsable, oversized, not HTTP).

aiohttp answers those itself, with a multi-line page whose text can quote the offending request
line, signed token included, back to whoever sent it, and logs each one with a traceback. A
gateway on the open internet sees such requests all day: they deserve a short status line and a
one-line log entry, nothing more.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web, web_protocol
from aiohttp.web_request import BaseRequest

log = logging.getLogger("gateway.protocol")

_REASONS = {
    HTTPStatus.BAD_REQUEST: "bad request",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "request too large",
    HTTPStatus.REQUEST_URI_TOO_LONG: "request line too long",
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: "request headers too large",
    HTTPStatus.NOT_IMPLEMENTED: "not implemented",
}


def one_line_error(
    self: web_protocol.RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    if request.writer.output_size > 0:
        # Part of a response already left: the only honest signal left is a cut connection.
        raise ConnectionError("response already started")
    if status >= 500 and status != HTTPStatus.NOT_IMPLEMENTED:
        log.error("unhandled error for %s %s", request.method, request.rel_url.path, exc_info=exc)
        reason = "internal error"
    else:
        log.debug("refused a malformed request from %s: %s", request.remote, type(exc).__name__)
        reason = _REASONS.get(HTTPStatus(status), "bad request")
    response = web.Response(
        status=status,
        text=reason + "\n",
        content_type="text/plain",
        headers={"Cache-Control": "no-store"},
    )
    response.force_close()
    return response


def install() -> None:
    """Replace aiohttp's protocol-level error page; idempotent, process-wide."""
    web_protocol.RequestHandler.handle_error = one_line_error  # type: ignore[method-assign]
