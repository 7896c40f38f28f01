"""A raw HTTP/1.1 client, so that what is compared is the bytes on the wire."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.gateway import RunningGateway


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        host, port = base_url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    def send(self, path: str, *headers: str, method: str = "GET", body: bytes = b"") -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: gateway.test", *headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def reply(self) -> Reply:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name not in headers, f"{name} sent twice"
            headers[name] = value.strip()
        status = int(status_line.split()[1])
        if headers.get("Transfer-Encoding") == "chunked":
            return Reply(status, headers, await self._chunks())
        length = 0 if status == 304 else int(headers.get("Content-Length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), 10)
        return Reply(status, headers, body)

    async def _chunks(self) -> bytes:
        body = bytearray()
        while True:
            size_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 10)
            size = int(size_line.split(b";")[0], 16)
            chunk = await asyncio.wait_for(self.reader.readexactly(size + 2), 10)
            assert chunk.endswith(b"\r\n"), "a chunk must end with CRLF"
            if size == 0:
                return bytes(body)
            body += chunk[:-2]

    async def get(self, path: str, *headers: str) -> Reply:
        self.send(path, *headers)
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


def path_of(gw: RunningGateway, upstream_url: str) -> str:
    """The gateway path (no scheme or host) that leads to `upstream_url`."""
    return gw.mint(upstream_url)[len(gw.base_url) :]


def comparable(reply: Reply, own_validators: dict[str, str] | None = None) -> Reply:
    """The reply with what differs between two instances by design made equal: the date,
    the request id, and a cache file's own mtime-based validators."""
    headers = {k: v for k, v in reply.headers.items() if k not in ("Date", "X-Request-Id")}
    for name, value in (own_validators or {}).items():
        if headers.get(name) == value:
            headers[name] = f"<own {name}>"
    return Reply(reply.status, headers, reply.body)


async def metric(base_url: str, name: str) -> float:
    """The value of one sample, as `/metrics` reports it: a metric's name, with its labels
    as written there (`name{label="value"}`) when it has any."""
    connection = await Connection.open(base_url)
    try:
        text = (await connection.get("/metrics")).body.decode()
    finally:
        connection.close()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found is not None, f"{name} is not reported"
    return float(found.group(1))
