"""Answers decided without I/O, and the request headers they depend on: the values both the
full aiohttp stack and the connection's own lane answer from."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Conditions:
    """The request headers an answer from memory depends on."""

    if_none_match: str = ""
    range: str | None = None
    accept_encoding: str = ""

    @classmethod
    def of(cls, request: web.BaseRequest) -> Conditions:
        headers = request.headers
        return cls(
            headers.get("If-None-Match", ""),
            headers.get("Range"),
            headers.get("Accept-Encoding", ""),
        )


@dataclass(frozen=True, slots=True)
class Answer:
    """A response decided without I/O. The full stack wraps it in an aiohttp response; the
    fast lane writes it straight to the socket. One source for both, so they cannot differ."""

    status: int
    headers: dict[str, str]
    body: bytes | memoryview = b""
    # Kept and given to request after request (so what is made from it may be kept too).
    reused: bool = False
