"""The one check for the shared secrets that guard the API and admin endpoints."""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway.errors import Forbidden, NotFound


def require_key(
    request: web.Request, expected: str | None, *, setting: str, allow_header: bool = True
) -> None:
    """Accept `Authorization: Bearer <key>` (or `X-API-Key` when allowed), compared in
    constant time. An endpoint whose key is not configured does not exist (404)."""
    if not expected:
        raise NotFound(f"this endpoint is disabled ({setting} is not set)")
    offered = request.headers.get("X-API-Key", "") if allow_header else ""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        offered = auth[7:].strip()
    if not hmac.compare_digest(offered.encode(), expected.encode()):
        raise Forbidden(f"missing or wrong key ({setting})")
