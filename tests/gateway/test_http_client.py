"""The gateway's own HTTP/1.1 client, against raw loopback servers that script every byte of
their answers and record what they were sent: request lines, headers, connections accepted and
how many were open at once.

Every server listens on 127.0.0.1; nothing here contacts any other address.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import shutil
import socket
import ssl
import subprocess
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.http_client import (
    ClientOptions,
    ConnectError,
    ConnectTimeout,
    HttpClient,
    HttpError,
    ReadTimeout,
    Response,
    ResponseError,
)

# -- raw servers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenRequest:
    line: str
    headers: CIMultiDictProxy[str]
    connection: int  # which connection it came on, counting accepts from 1


class Peer:
    """One accepted connection, as a server script sees it."""

    def __init__(
        self,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server: RawServer,
    ) -> None:
        self.number = number
        self.reader, self.writer = reader, writer
        self.server = server

    async def request(self) -> SeenRequest | None:
        """The next request head on this connection; None once the client has closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        line, *lines = head[:-4].decode("latin-1").split("\r\n")
        headers: CIMultiDict[str] = CIMultiDict()
        for header in lines:
            name, _, value = header.partition(":")
            headers.add(name.strip(), value.strip())
        seen = SeenRequest(line, CIMultiDictProxy(headers), self.number)
        self.server.requests.append(seen)
        return seen

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


Script = Callable[[Peer], Awaitable[None]]


class RawServer:
    """Runs `script` for every connection it accepts; keeps count of what it saw."""

    def __init__(self, script: Script, ssl_context: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.ssl_context = ssl_context
        self.port = 0
        self.accepted = 0
        self.open_now = 0
        self.max_open = 0
        self.requests: list[SeenRequest] = []
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._conversations: set[asyncio.Future[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connected, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, path_qs: str = "/", scheme: str = "") -> str:
        scheme = scheme or ("https" if self.ssl_context else "http")
        return f"{scheme}://127.0.0.1:{self.port}{path_qs}"

    def requests_on(self, connection: int) -> list[str]:
        return [r.line for r in self.requests if r.connection == connection]

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.append(writer)
        self.accepted += 1
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        # The script runs in a task of its own, cancelled at teardown if it is still going
        # (asyncio's streams log a handler task that ends cancelled).
        conversation = asyncio.ensure_future(
            self._converse(Peer(self.accepted, reader, writer, self))
        )
        self._conversations.add(conversation)
        try:
            await conversation
        except asyncio.CancelledError:
            pass
        finally:
            self.open_now -= 1
            writer.close()
            self._conversations.discard(conversation)
            self._handlers.discard(handler)

    async def _converse(self, peer: Peer) -> None:
        try:
            await self.script(peer)
            # The script is done talking; the connection counts as open until the client
            # closes its end.
            while await peer.reader.read(65536):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except Exception as error:  # a broken script: reported at teardown
            self.errors.append(error)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for conversation in list(self._conversations):
            conversation.cancel()
        await asyncio.gather(*self._conversations, *self._handlers, return_exceptions=True)
        await self._server.wait_closed()


Serve = Callable[..., Awaitable[RawServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts raw servers: `await serve(script, ssl_context=None)`; all closed afterwards."""
    servers: list[RawServer] = []

    async def start(script: Script, ssl_context: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(script, ssl_context)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()
    for server in servers:
        assert not server.errors, f"a server script broke: {server.errors!r}"


# -- what servers answer ----------------------------------------------------------------------


def head(*lines: str, status: str = "HTTP/1.1 200 OK") -> bytes:
    return ("\r\n".join([status, *lines]) + "\r\n\r\n").encode("latin-1")


def ok(body: bytes, *lines: str, status: str = "HTTP/1.1 200 OK") -> bytes:
    return head(f"Content-Length: {len(body)}", *lines, status=status) + body


def answering(reply: bytes | Callable[[SeenRequest], bytes]) -> Script:
    """Answers every request on every connection; leaves closing to the client."""

    async def script(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            await peer.send(reply(request) if callable(reply) else reply)

    return script


def answering_then_closing(reply: bytes) -> Script:
    """Answers the first request on each connection, then closes the connection."""

    async def script(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(reply)
        peer.close()

    return script


def dripping(*pieces: bytes, pause: float = 0.01, then_close: bool = False) -> Script:
    """Answers each request with `pieces`, one write each with a pause between them (so that
    a head and a bad body after it do not arrive together: the body's error is then the
    reader's, not get()'s)."""

    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            for piece in pieces:
                await peer.send(piece)
                await asyncio.sleep(pause)
            if then_close:
                peer.close()
                return

    return script


async def silent(peer: Peer) -> None:
    """Reads requests and never answers."""
    while await peer.request() is not None:
        pass


def echoing_request_line(request: SeenRequest) -> bytes:
    return ok(request.line.encode())


# -- clients ----------------------------------------------------------------------------------

MakeClient = Callable[..., HttpClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """`make_client(**options)`: a client with those ClientOptions (short timeouts unless
    given, so that a hang fails fast); all closed afterwards."""
    clients: list[HttpClient] = []

    def make(**options: Any) -> HttpClient:
        client = HttpClient(
            ClientOptions(**{"connect_timeout": 5.0, "read_timeout": 5.0, **options})
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def client(make_client: MakeClient) -> HttpClient:
    return make_client()


async def fetch(client: HttpClient, url: str, headers: dict[str, str] | None = None) -> bytes:
    """GET, the whole body, and the connection handed back."""
    response = await asyncio.wait_for(client.get(url, headers or {}), 10)
    body = await asyncio.wait_for(response.read(), 10)
    response.release()
    return body


async def body_fails(client: HttpClient, server: RawServer) -> None:
    """The head arrives, and reading the body raises `ResponseError`."""
    response = await client.get(server.url("/"))
    with pytest.raises(ResponseError):
        await asyncio.wait_for(response.read(), 10)
    response.close()


async def collect(response: Response) -> bytes:
    body = bytearray()
    async for chunk in response.iter_chunks():
        body += chunk
    return bytes(body)


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


def unused_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- TLS --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for IP 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    command = (
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
        " -addext subjectAltName=IP:127.0.0.1 -keyout k.pem -out c.pem"
    )
    subprocess.run(command.split(), cwd=directory, check=True, capture_output=True)
    return Certificate(directory / "c.pem", directory / "k.pem")


@pytest.fixture
def server_tls(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    return context


@pytest.fixture
def trusting(certificate: Certificate) -> ssl.SSLContext:
    """A client context that trusts the test certificate (and nothing else)."""
    return ssl.create_default_context(cafile=str(certificate.cert))


# -- proxies ----------------------------------------------------------------------------------


async def relay(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    await asyncio.gather(pipe(a_reader, b_writer), pipe(b_reader, a_writer))


def forward_proxy(connect_answer: bytes = b"HTTP/1.1 200 Connection established\r\n\r\n") -> Script:
    """Answers plain requests itself ("from the proxy"); for CONNECT to 127.0.0.1 answers
    `connect_answer` and, if that was a 200, relays bytes both ways."""

    async def script(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            method, target, _ = request.line.split(" ")
            if method != "CONNECT":
                await peer.send(ok(b"from the proxy"))
                continue
            host, _, port = target.rpartition(":")
            if host != "127.0.0.1":  # never anywhere but loopback
                await peer.send(ok(b"", "Connection: close", status="HTTP/1.1 403 Forbidden"))
                return
            await peer.send(connect_answer)
            if not connect_answer.startswith(b"HTTP/1.1 200 "):
                continue
            origin_reader, origin_writer = await asyncio.open_connection(host, int(port))
            await relay(peer.reader, peer.writer, origin_reader, origin_writer)
            return

    return script


# -- exceptions -------------------------------------------------------------------------------


def test_every_error_is_an_http_error() -> None:
    for error in (ConnectError, ConnectTimeout, ReadTimeout, ResponseError):
        assert issubclass(error, HttpError)
    assert issubclass(HttpError, Exception)


# -- 1. the request, and a Content-Length body ------------------------------------------------

BINARY = bytes(range(256)) * 40 + b"\r\n\r\nHTTP/1.1 200 OK\r\n\r\n" + bytes(range(255, -1, -1))


async def test_a_content_length_body_arrives_byte_exact(serve: Serve, client: HttpClient) -> None:
    server = await serve(answering(ok(BINARY, "Content-Type: video/mp2t", "X-Two: a", "X-Two: b")))
    url = server.url("/a%20b/seg.ts?token=a%26b%3D%2Bc&x=1")

    response = await client.get(url)

    assert (response.status, response.reason, response.version) == (200, "OK", "1.1")
    assert response.url == URL(url)
    assert response.headers["content-type"] == "video/mp2t"
    assert response.headers.getall("X-Two") == ["a", "b"]
    assert await response.read() == BINARY
    response.release()


async def test_the_request_head_the_server_sees(serve: Serve, client: HttpClient) -> None:
    server = await serve(answering(ok(b"x")))

    await fetch(
        client,
        server.url("/a%20b/seg.ts?token=a%26b%3D%2Bc&x=1"),
        {"X-Request-Id": "r-1", "User-Agent": "gateway-test/1"},
    )

    [request] = server.requests
    assert request.line == "GET /a%20b/seg.ts?token=a%26b%3D%2Bc&x=1 HTTP/1.1"
    assert request.headers.getall("Host") == [f"127.0.0.1:{server.port}"]
    assert request.headers.getall("Accept-Encoding") == ["gzip, deflate"]
    assert request.headers["X-Request-Id"] == "r-1"
    assert request.headers["User-Agent"] == "gateway-test/1"


async def test_a_callers_accept_encoding_replaces_the_default(
    serve: Serve, client: HttpClient
) -> None:
    server = await serve(answering(ok(b"x")))

    await fetch(client, server.url("/"), {"accept-encoding": "identity"})

    assert server.requests[0].headers.getall("Accept-Encoding") == ["identity"]


async def test_a_yarl_url_is_accepted(serve: Serve, client: HttpClient) -> None:
    server = await serve(answering(echoing_request_line))

    response = await client.get(URL(server.url("/p?q=1")))

    assert await response.read() == b"GET /p?q=1 HTTP/1.1"
    response.release()


# -- 2. keep-alive ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "extra", "reused"),
    [
        ("HTTP/1.1 200 OK", [], True),
        ("HTTP/1.1 200 OK", ["Connection: close"], False),
        ("HTTP/1.0 200 OK", [], False),
        ("HTTP/1.0 200 OK", ["Connection: keep-alive"], True),
    ],
    ids=["1.1", "1.1-connection-close", "1.0", "1.0-keep-alive"],
)
async def test_a_connection_is_reused_only_when_the_answer_allows_it(
    serve: Serve, client: HttpClient, status: str, extra: list[str], reused: bool
) -> None:
    # The server never closes on its own: a connection wrongly reused would be answered.
    server = await serve(answering(lambda r: ok(r.line.encode(), *extra, status=status)))

    assert await fetch(client, server.url("/1")) == b"GET /1 HTTP/1.1"
    if reused:
        assert client.open_connections == 1
    else:
        await until(lambda: client.open_connections == 0, seconds=1)
    assert await fetch(client, server.url("/2")) == b"GET /2 HTTP/1.1"

    assert server.accepted == (1 if reused else 2)
    assert len(server.requests) == 2


async def test_a_response_released_before_its_body_was_read_is_not_reused(
    serve: Serve, client: HttpClient
) -> None:
    server = await serve(answering(lambda r: ok(r.line.encode() * 5000)))

    response = await client.get(server.url("/unread"))
    response.release()
    body = await fetch(client, server.url("/next"))

    assert body == b"GET /next HTTP/1.1" * 5000
    assert server.accepted == 2


async def test_an_idle_connection_older_than_keepalive_seconds_is_not_reused(
    serve: Serve, make_client: MakeClient
) -> None:
    server = await serve(answering(echoing_request_line))
    client = make_client(keepalive_seconds=0.2)

    await fetch(client, server.url("/1"))
    await asyncio.sleep(0.1)
    await fetch(client, server.url("/2"))  # still fresh
    await asyncio.sleep(0.4)
    await fetch(client, server.url("/3"))

    assert server.accepted == 2
    assert server.requests_on(1) == ["GET /1 HTTP/1.1", "GET /2 HTTP/1.1"]
    assert server.requests_on(2) == ["GET /3 HTTP/1.1"]


async def test_close_drops_the_connection(serve: Serve, client: HttpClient) -> None:
    server = await serve(answering(ok(b"body")))

    response = await client.get(server.url("/"))
    response.close()

    await until(lambda: client.open_connections == 0, seconds=1)
    await until(lambda: server.open_now == 0)
    assert await fetch(client, server.url("/")) == b"body"
    assert server.accepted == 2


async def test_closing_the_client_closes_its_idle_connections(
    serve: Serve, make_client: MakeClient
) -> None:
    server = await serve(answering(ok(b"body")))
    client = make_client()
    await fetch(client, server.url("/"))
    assert client.open_connections == 1

    await client.close()

    assert client.open_connections == 0
    await until(lambda: server.open_now == 0)


# -- 3. chunked -------------------------------------------------------------------------------

BIG_CHUNK = os.urandom(0x1A2B3)
CHUNKED_PIECES = [
    head("Transfer-Encoding: chunked"),
    b"4;name=value\r\nWiki\r\n",
    b"6\r\npedia \r\n",
    b'E;a=1;b="q;x"\r\nin \r\n\r\nchunks.\r\n',
    b"1A2B3\r\n" + BIG_CHUNK + b"\r\n",
    b"0\r\nExpires: never\r\nX-Trailer: 1\r\n\r\n",
]
CHUNKED_BODY = b"Wikipedia in \r\n\r\nchunks." + BIG_CHUNK


async def test_a_chunked_body_is_decoded_exactly_and_the_connection_reused(
    serve: Serve, client: HttpClient
) -> None:
    server = await serve(dripping(*CHUNKED_PIECES))

    first = await client.get(server.url("/1"))
    assert await collect(first) == CHUNKED_BODY
    first.release()
    # The trailers were read to their end: the next answer on the connection parses.
    assert await fetch(client, server.url("/2")) == CHUNKED_BODY

    assert server.accepted == 1


@pytest.mark.parametrize(
    "size_line",
    [b"zz", b"", b"-1", b"0x5", b"+5", b"1_0", b"5 5"],
    ids=["not-hex", "empty", "negative", "0x-prefix", "plus-sign", "underscore", "two-numbers"],
)
async def test_a_bad_chunk_size_line_is_a_response_error(
    serve: Serve, client: HttpClient, size_line: bytes
) -> None:
    server = await serve(
        dripping(
            head("Transfer-Encoding: chunked"),
            b"5\r\nhello\r\n" + size_line + b"\r\nhello\r\n0\r\n\r\n",
        )
    )

    await body_fails(client, server)


async def test_chunk_data_not_followed_by_crlf_is_a_response_error(
    serve: Serve, client: HttpClient
) -> None:
    server = await serve(
        dripping(head("Transfer-Encoding: chunked"), b"5\r\nhelloXY3\r\nabc\r\n0\r\n\r\n")
    )

    await body_fails(client, server)


async def test_a_chunked_body_closed_before_the_last_chunk_is_a_response_error(
    serve: Serve, client: HttpClient
) -> None:
    server = await serve(
        dripping(head("Transfer-Encoding: chunked"), b"5\r\nhello\r\n", then_close=True)
    )

    await body_fails(client, server)


# -- 4. content encodings ---------------------------------------------------------------------

TEXT = b"".join(b"#EXTINF:4.000,\nseg_%05d.ts\n" % i for i in range(20000))


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
async def test_a_compressed_body_is_decoded(
    serve: Serve, client: HttpClient, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    encoded = compress(TEXT)
    server = await serve(answering(ok(encoded, f"Content-Encoding: {encoding}")))

    response = await client.get(server.url("/index.m3u8"))

    assert await collect(response) == TEXT
    response.release()
    assert await fetch(client, server.url("/again")) == TEXT
    assert server.accepted == 1


async def test_a_gzipped_chunked_body_is_decoded(serve: Serve, client: HttpClient) -> None:
    encoded = gzip.compress(TEXT)
    thirds = [encoded[: len(encoded) // 3], encoded[len(encoded) // 3 : -7], encoded[-7:]]
    server = await serve(
        dripping(
            head("Transfer-Encoding: chunked", "Content-Encoding: gzip"),
            *(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in thirds),
            b"0\r\n\r\n",
        )
    )

    assert await fetch(client, server.url("/")) == TEXT


@pytest.mark.parametrize(
    "encoded",
    [b"this is not gzip at all", gzip.compress(TEXT)[:-100]],
    ids=["garbage", "truncated-stream"],
)
async def test_a_bad_gzip_body_is_a_response_error(
    serve: Serve, client: HttpClient, encoded: bytes
) -> None:
    server = await serve(
        dripping(head(f"Content-Length: {len(encoded)}", "Content-Encoding: gzip"), encoded)
    )

    await body_fails(client, server)


# -- 5. a body until the server closes --------------------------------------------------------


@pytest.mark.parametrize("status", ["HTTP/1.0 200 OK", "HTTP/1.1 200 OK"])
async def test_a_body_without_length_runs_until_the_server_closes(
    serve: Serve, client: HttpClient, status: str
) -> None:
    server = await serve(
        dripping(
            head("Content-Type: text/plain", status=status),
            b"part one, ",
            b"part two",
            then_close=True,
        )
    )

    response = await client.get(server.url("/1"))
    assert response.version == status[5:8]
    assert await response.read() == b"part one, part two"
    response.release()
    assert await fetch(client, server.url("/2")) == b"part one, part two"

    assert server.accepted == 2


# -- 6. a body cut short ----------------------------------------------------------------------


@pytest.mark.parametrize("read", [Response.read, collect], ids=["read", "iter_chunks"])
async def test_a_body_cut_short_is_a_response_error(
    serve: Serve, client: HttpClient, read: Callable[[Response], Awaitable[bytes]]
) -> None:
    server = await serve(dripping(head("Content-Length: 1000"), b"0123456789", then_close=True))

    response = await client.get(server.url("/"))
    with pytest.raises(ResponseError):
        await asyncio.wait_for(read(response), 10)
    response.close()


# -- 7. interim answers -----------------------------------------------------------------------


INTERIM_THEN_FINAL = [
    head(status="HTTP/1.1 100 Continue"),
    head("Link: </style.css>; rel=preload", status="HTTP/1.1 103 Early Hints"),
    ok(b"final", "X-Final: yes"),
]


@pytest.mark.parametrize(
    "script",
    [dripping(*INTERIM_THEN_FINAL), answering(b"".join(INTERIM_THEN_FINAL))],
    ids=["apart", "in-one-write"],
)
async def test_interim_1xx_answers_are_skipped(
    serve: Serve, client: HttpClient, script: Script
) -> None:
    server = await serve(script)

    response = await client.get(server.url("/"))

    assert (response.status, response.reason) == (200, "OK")
    assert response.headers["X-Final"] == "yes"
    assert "Link" not in response.headers
    assert await response.read() == b"final"
    response.release()


# -- 8. answers without a body ----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        head(status="HTTP/1.1 204 No Content"),
        # A 304 may carry the Content-Length of the representation it stands for.
        head("Content-Length: 1234", 'ETag: "v1"', status="HTTP/1.1 304 Not Modified"),
    ],
    ids=["204", "304"],
)
async def test_204_and_304_have_no_body_and_the_connection_is_reused(
    serve: Serve, client: HttpClient, answer: bytes
) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        while (request := await peer.request()) is not None:
            await peer.send(echoing_request_line(request))

    server = await serve(script)

    response = await client.get(server.url("/1"))
    assert response.status in (204, 304)
    assert await asyncio.wait_for(response.read(), 2) == b""
    response.release()
    assert await fetch(client, server.url("/2")) == b"GET /2 HTTP/1.1"

    assert server.accepted == 1


# -- 9. malformed heads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon in this line\r\n\r\n",
    ],
    ids=["no-code", "bad-code", "garbage", "not-http", "header-without-colon"],
)
async def test_a_malformed_head_is_a_response_error(
    serve: Serve, client: HttpClient, answer: bytes
) -> None:
    server = await serve(answering(answer))

    with pytest.raises(ResponseError):
        await asyncio.wait_for(client.get(server.url("/")), 10)


@pytest.mark.parametrize(
    "lengths",
    [["ten"], ["10", "20"], ["-1"]],
    ids=["not-a-number", "two-values", "negative"],
)
async def test_a_bad_content_length_is_a_response_error(
    serve: Serve, client: HttpClient, lengths: list[str]
) -> None:
    server = await serve(
        answering(head(*(f"Content-Length: {n}" for n in lengths)) + b"0123456789" * 2)
    )

    with pytest.raises(ResponseError):  # from get() or, at the latest, from read()
        response = await asyncio.wait_for(client.get(server.url("/")), 10)
        await asyncio.wait_for(response.read(), 10)


@pytest.mark.parametrize(
    "answer",
    [
        # One header line that never ends, the connection left open.
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000,
        # A complete head, in many lines.
        head(*(f"X-Header-{i}: {'v' * 60}" for i in range(1200)), "Content-Length: 0"),
    ],
    ids=["endless-line", "many-lines"],
)
async def test_a_head_over_64_kib_is_a_response_error(
    serve: Serve, client: HttpClient, answer: bytes
) -> None:
    assert len(answer) > 64 * 1024
    server = await serve(answering(answer))

    with pytest.raises(ResponseError):
        await asyncio.wait_for(client.get(server.url("/")), 10)


async def test_a_head_under_64_kib_is_fine(serve: Serve, client: HttpClient) -> None:
    answer = ok(b"ok", *(f"X-Header-{i}: {'v' * 60}" for i in range(780)))
    assert 50 * 1024 < len(answer) < 60 * 1024
    server = await serve(answering(answer))

    response = await client.get(server.url("/"))

    assert response.headers["X-Header-779"] == "v" * 60
    assert await response.read() == b"ok"
    response.release()


# -- 10. connections the server closed while pooled -------------------------------------------


async def test_a_pooled_connection_closed_by_the_server_is_replaced(
    serve: Serve, client: HttpClient
) -> None:
    server = await serve(answering_then_closing(ok(b"once")))

    assert await fetch(client, server.url("/1")) == b"once"
    await until(lambda: server.open_now == 0)
    await asyncio.sleep(0.05)
    assert await fetch(client, server.url("/2")) == b"once"

    assert server.accepted == 2
    assert server.requests_on(1) == ["GET /1 HTTP/1.1"]
    assert server.requests_on(2) == ["GET /2 HTTP/1.1"]


async def test_a_pooled_connection_closed_as_the_request_arrives_is_retried_once(
    serve: Serve, client: HttpClient
) -> None:
    async def script(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            if peer.number == 1 and len(server.requests_on(1)) == 2:
                peer.close()  # read the request, then closed without a byte of answer
                return
            await peer.send(echoing_request_line(request))

    server = await serve(script)

    assert await fetch(client, server.url("/1")) == b"GET /1 HTTP/1.1"
    assert await fetch(client, server.url("/2")) == b"GET /2 HTTP/1.1"

    assert server.accepted == 2
    assert server.requests_on(1) == ["GET /1 HTTP/1.1", "GET /2 HTTP/1.1"]
    assert server.requests_on(2) == ["GET /2 HTTP/1.1"]


async def test_the_retry_happens_only_once(serve: Serve, client: HttpClient) -> None:
    async def script(peer: Peer) -> None:
        request = await peer.request()
        if request is not None and peer.number == 1:
            await peer.send(echoing_request_line(request))
            await peer.request()
        peer.close()  # every later request: closed without an answer

    server = await serve(script)
    await fetch(client, server.url("/1"))

    with pytest.raises(HttpError):
        await asyncio.wait_for(client.get(server.url("/2")), 10)

    assert server.accepted == 2
    assert [r.line for r in server.requests] == ["GET /1 HTTP/1.1"] + ["GET /2 HTTP/1.1"] * 2


async def test_a_new_connection_closed_without_an_answer_is_not_retried(
    serve: Serve, client: HttpClient
) -> None:
    server = await serve(answering_then_closing(b""))

    with pytest.raises(HttpError):
        await asyncio.wait_for(client.get(server.url("/")), 10)

    assert server.accepted == 1


async def test_a_pooled_connection_closed_mid_answer_is_not_retried(
    serve: Serve, client: HttpClient
) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(ok(b"first"))
        await peer.request()
        await peer.send(b"HTTP/1.1 2")
        peer.close()

    server = await serve(script)
    await fetch(client, server.url("/1"))

    with pytest.raises(ResponseError):
        await asyncio.wait_for(client.get(server.url("/2")), 10)

    assert server.accepted == 1


# -- 11. connections per host -----------------------------------------------------------------


async def test_connections_per_host_caps_the_open_connections(
    serve: Serve, make_client: MakeClient
) -> None:
    async def slow(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            await asyncio.sleep(0.1)
            await peer.send(echoing_request_line(request))

    server = await serve(slow)
    client = make_client(connections_per_host=1)

    bodies = await asyncio.gather(*(fetch(client, server.url(f"/{i}")) for i in range(3)))

    assert bodies == [f"GET /{i} HTTP/1.1".encode() for i in range(3)]
    assert server.max_open == 1
    assert len(server.requests) == 3


async def test_the_cap_is_per_host_and_port(serve: Serve, make_client: MakeClient) -> None:
    gate = asyncio.Event()

    async def held(peer: Peer) -> None:
        while await peer.request() is not None:
            await gate.wait()
            await peer.send(ok(b"held"))

    busy = await serve(held)
    other = await serve(answering(ok(b"other")))
    client = make_client(connections_per_host=1)

    waiting = asyncio.create_task(fetch(client, busy.url("/")))
    try:
        await until(lambda: len(busy.requests) == 1)
        assert await fetch(client, other.url("/")) == b"other"
    finally:
        gate.set()
    assert await waiting == b"held"


# -- 12. read timeouts ------------------------------------------------------------------------


async def test_no_answer_within_read_timeout_is_a_read_timeout(
    serve: Serve, make_client: MakeClient
) -> None:
    server = await serve(silent)
    client = make_client(read_timeout=0.2)

    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        await asyncio.wait_for(client.get(server.url("/")), 10)

    assert time.monotonic() - started < 2


async def test_a_body_that_stalls_is_a_read_timeout_from_iter_chunks(
    serve: Serve, make_client: MakeClient
) -> None:
    server = await serve(dripping(head("Content-Length: 100"), b"0123456789"))
    client = make_client(read_timeout=0.2)
    response = await client.get(server.url("/"))

    got = bytearray()
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        async for chunk in response.iter_chunks():
            got += chunk
    response.close()

    assert got == b"0123456789"  # what did arrive was delivered first
    assert time.monotonic() - started < 2


async def test_a_body_that_trickles_is_not_a_timeout(serve: Serve, make_client: MakeClient) -> None:
    server = await serve(
        dripping(head("Content-Length: 10"), *(b"%d" % i for i in range(10)), pause=0.1)
    )
    client = make_client(read_timeout=0.35)

    assert await fetch(client, server.url("/")) == b"0123456789"  # ~1 s in all


# -- 13. connecting ---------------------------------------------------------------------------


async def test_a_refused_connection_is_a_connect_error(client: HttpClient) -> None:
    with pytest.raises(ConnectError):
        await asyncio.wait_for(client.get(f"http://127.0.0.1:{unused_port()}/"), 10)


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connect to it gets no SYN-ACK."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


async def test_a_connect_that_takes_too_long_is_a_connect_timeout(
    make_client: MakeClient, unanswered_port: int
) -> None:
    client = make_client(connect_timeout=0.3)

    started = time.monotonic()
    with pytest.raises(ConnectTimeout):
        await asyncio.wait_for(client.get(f"http://127.0.0.1:{unanswered_port}/"), 10)

    assert time.monotonic() - started < 2


# -- 14. header injection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nInjected: 1"),
        ("X-Evil", "a\nInjected: 1"),
        ("X-Evil", "a\rb"),
        ("X-Evil", "a\x00b"),
        ("X-Evil\r\nInjected", "1"),
        ("X-Ev\x00il", "1"),
    ],
    ids=["crlf-value", "lf-value", "cr-value", "nul-value", "crlf-name", "nul-name"],
)
async def test_cr_lf_or_nul_in_a_header_is_a_value_error_before_anything_is_sent(
    serve: Serve, client: HttpClient, name: str, value: str
) -> None:
    received = bytearray()

    async def recording(peer: Peer) -> None:
        while data := await peer.reader.read(65536):
            received.extend(data)

    server = await serve(recording)

    with pytest.raises(ValueError):
        await asyncio.wait_for(client.get(server.url("/"), {name: value}), 10)
    await asyncio.sleep(0.1)

    assert received == b""


async def test_the_client_works_on_after_a_refused_header(serve: Serve, client: HttpClient) -> None:
    server = await serve(answering(echoing_request_line))

    with pytest.raises(ValueError):
        await client.get(server.url("/bad"), {"X-Evil": "a\r\nb: c"})
    assert await fetch(client, server.url("/good")) == b"GET /good HTTP/1.1"

    assert [r.line for r in server.requests] == ["GET /good HTTP/1.1"]


# -- 15. holding the reading ------------------------------------------------------------------


async def test_held_reading_delivers_nothing_until_resumed_and_nothing_is_lost(
    serve: Serve, client: HttpClient
) -> None:
    body = os.urandom(16 * 1024 * 1024)

    async def big(peer: Peer) -> None:
        if await peer.request() is not None:
            peer.write(head(f"Content-Length: {len(body)}"))
            for i in range(0, len(body), 65536):
                await peer.send(body[i : i + 65536])

    server = await serve(big)
    response = await client.get(server.url("/big"))
    received = bytearray()
    resumes: list[Callable[[], None]] = []

    async def consume() -> None:
        async for chunk in response.iter_chunks():
            received.extend(chunk)
            if not resumes:
                resumes.append(response.hold_reading())

    consumer = asyncio.create_task(consume())
    try:
        await until(lambda: bool(resumes))
        await asyncio.sleep(0.5)  # what was already buffered is delivered, then nothing
        held_at = len(received)
        await asyncio.sleep(0.3)
        still_at = len(received)
        assert still_at == held_at
        assert held_at < len(body)

        resumes[0]()
        await asyncio.wait_for(consumer, 10)
    finally:
        consumer.cancel()

    assert received == body
    response.release()


async def test_a_body_held_and_resumed_before_reading_arrives_whole(
    serve: Serve, client: HttpClient
) -> None:
    server = await serve(answering(ok(BINARY * 50)))
    response = await client.get(server.url("/"))

    resume = response.hold_reading()
    await asyncio.sleep(0.1)
    resume()

    assert await asyncio.wait_for(response.read(), 10) == BINARY * 50
    response.release()


# -- 16. resolving names ----------------------------------------------------------------------


async def test_resolve_decides_where_a_name_connects(serve: Serve, make_client: MakeClient) -> None:
    server = await serve(answering(ok(b"via resolve")))
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"]

    client = make_client(resolve=resolve)

    assert await fetch(client, f"http://origin.test:{server.port}/x") == b"via resolve"

    assert asked == [("origin.test", server.port)]
    [request] = server.requests
    assert request.line == "GET /x HTTP/1.1"
    assert request.headers["Host"] == f"origin.test:{server.port}"


async def test_resolved_addresses_are_tried_in_order(serve: Serve, make_client: MakeClient) -> None:
    server = await serve(answering(ok(b"second address")))

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.2", "127.0.0.1"]  # nothing listens on the first

    client = make_client(resolve=resolve)

    assert await fetch(client, f"http://origin.test:{server.port}/") == b"second address"


async def test_a_resolve_that_fails_is_a_connect_error(make_client: MakeClient) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        raise OSError("no such name")

    client = make_client(resolve=resolve)

    with pytest.raises(ConnectError):
        await asyncio.wait_for(client.get("http://origin.test:8080/"), 10)


async def test_a_resolve_with_no_addresses_is_a_connect_error(make_client: MakeClient) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return []

    client = make_client(resolve=resolve)

    with pytest.raises(ConnectError):
        await asyncio.wait_for(client.get("http://origin.test:8080/"), 10)


# -- 17. TLS ----------------------------------------------------------------------------------


async def test_https_with_a_trusted_certificate(
    serve: Serve, make_client: MakeClient, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    server = await serve(answering(echoing_request_line), ssl_context=server_tls)
    client = make_client(ssl_context=trusting)

    assert await fetch(client, server.url("/1")) == b"GET /1 HTTP/1.1"
    assert await fetch(client, server.url("/2")) == b"GET /2 HTTP/1.1"

    assert server.accepted == 1
    assert server.requests[0].headers["Host"] == f"127.0.0.1:{server.port}"


async def test_https_with_an_untrusted_certificate_is_a_connect_error(
    serve: Serve, client: HttpClient, server_tls: ssl.SSLContext
) -> None:
    server = await serve(answering(ok(b"secret")), ssl_context=server_tls)

    with pytest.raises(ConnectError):
        await asyncio.wait_for(client.get(server.url("/")), 10)

    assert server.requests == []


async def test_https_to_a_name_the_certificate_is_not_for_is_a_connect_error(
    serve: Serve, make_client: MakeClient, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    server = await serve(answering(ok(b"secret")), ssl_context=server_tls)

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    client = make_client(ssl_context=trusting, resolve=resolve)

    with pytest.raises(ConnectError):
        await asyncio.wait_for(client.get(f"https://wrong.test:{server.port}/"), 10)

    assert server.requests == []


# -- 18. proxies ------------------------------------------------------------------------------


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


async def test_http_through_a_proxy_uses_the_absolute_form_and_proxy_credentials(
    serve: Serve, make_client: MakeClient
) -> None:
    origin = await serve(answering(ok(b"from the origin")))
    proxy = await serve(forward_proxy())
    client = make_client(proxy=f"http://user:pass@127.0.0.1:{proxy.port}")

    body = await fetch(client, origin.url("/path?q=1"), {"X-Caller": "yes"})

    assert body == b"from the proxy"
    [request] = proxy.requests
    assert request.line == f"GET http://127.0.0.1:{origin.port}/path?q=1 HTTP/1.1"
    assert request.headers["Proxy-Authorization"] == basic("user:pass")
    assert request.headers["Host"] == f"127.0.0.1:{origin.port}"
    assert request.headers["X-Caller"] == "yes"
    assert origin.accepted == 0


async def test_a_proxy_without_credentials_gets_no_proxy_authorization(
    serve: Serve, make_client: MakeClient
) -> None:
    proxy = await serve(forward_proxy())
    client = make_client(proxy=f"http://127.0.0.1:{proxy.port}")

    # The default port: nothing is contacted but the proxy, which answers itself.
    assert await fetch(client, "http://127.0.0.1/path") == b"from the proxy"

    [request] = proxy.requests
    assert request.line in (
        "GET http://127.0.0.1/path HTTP/1.1",
        "GET http://127.0.0.1:80/path HTTP/1.1",
    )
    assert request.headers["Host"] == "127.0.0.1"
    assert "Proxy-Authorization" not in request.headers


async def test_https_through_a_proxy_tunnels_with_connect(
    serve: Serve, make_client: MakeClient, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    origin = await serve(answering(echoing_request_line), ssl_context=server_tls)
    proxy = await serve(forward_proxy())
    client = make_client(proxy=f"http://user:pass@127.0.0.1:{proxy.port}", ssl_context=trusting)

    assert await fetch(client, origin.url("/path?q=1")) == b"GET /path?q=1 HTTP/1.1"

    [connect] = proxy.requests
    assert connect.line == f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1"
    assert connect.headers["Proxy-Authorization"] == basic("user:pass")
    [request] = origin.requests
    assert request.headers["Host"] == f"127.0.0.1:{origin.port}"
    assert "Proxy-Authorization" not in request.headers


async def test_a_refused_connect_is_an_error(
    serve: Serve, make_client: MakeClient, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    origin = await serve(answering(ok(b"secret")), ssl_context=server_tls)
    proxy = await serve(
        forward_proxy(
            ok(
                b"",
                'Proxy-Authenticate: Basic realm="p"',
                status="HTTP/1.1 407 Proxy Authentication Required",
            )
        )
    )
    client = make_client(proxy=f"http://127.0.0.1:{proxy.port}", ssl_context=trusting)

    with pytest.raises(HttpError):
        await asyncio.wait_for(client.get(origin.url("/")), 10)

    assert origin.accepted == 0


@dataclass
class SocksSeen:
    host: str
    port: int
    user: str | None


def socks5_proxy(seen: list[SocksSeen], login: tuple[str, str] | None = None) -> Script:
    """A SOCKS5 proxy (RFC 1928, with RFC 1929 logins when `login` is given) that records
    what each client asked for and connects only to 127.0.0.1, whatever the name."""

    async def script(peer: Peer) -> None:
        reader, writer = peer.reader, peer.writer
        _, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        user = None
        if login is not None:
            if 2 not in methods:
                writer.write(b"\x05\xff")
                return
            writer.write(b"\x05\x02")
            _, size = await reader.readexactly(2)
            user = (await reader.readexactly(size)).decode()
            (size,) = await reader.readexactly(1)
            password = (await reader.readexactly(size)).decode()
            if (user, password) != login:
                writer.write(b"\x01\x01")
                return
            writer.write(b"\x01\x00")
        else:
            writer.write(b"\x05\x00")
        _, _, _, kind = await reader.readexactly(4)
        if kind == 3:
            (size,) = await reader.readexactly(1)
            host = (await reader.readexactly(size)).decode()
        else:
            host = socket.inet_ntop(
                socket.AF_INET if kind == 1 else socket.AF_INET6,
                await reader.readexactly(4 if kind == 1 else 16),
            )
        port = int.from_bytes(await reader.readexactly(2), "big")
        seen.append(SocksSeen(host, port, user))
        writer.write(b"\x05\x00\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
        origin_reader, origin_writer = await asyncio.open_connection("127.0.0.1", port)
        await relay(reader, writer, origin_reader, origin_writer)

    return script


async def test_http_through_a_socks5_proxy_sends_the_name_for_the_proxy_to_resolve(
    serve: Serve, make_client: MakeClient
) -> None:
    origin = await serve(answering(echoing_request_line))
    seen: list[SocksSeen] = []
    proxy = await serve(socks5_proxy(seen, login=("user", "pass")))

    async def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("a name sent through SOCKS is resolved by the proxy")

    client = make_client(proxy=f"socks5://user:pass@127.0.0.1:{proxy.port}", resolve=no_dns)

    assert await fetch(client, f"http://origin.test:{origin.port}/x?y=1") == b"GET /x?y=1 HTTP/1.1"
    assert seen == [SocksSeen("origin.test", origin.port, "user")]
    [request] = origin.requests
    assert request.headers["Host"] == f"origin.test:{origin.port}"
    assert "Proxy-Authorization" not in request.headers


async def test_https_through_a_socks5_proxy(
    serve: Serve, make_client: MakeClient, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    origin = await serve(answering(echoing_request_line), ssl_context=server_tls)
    seen: list[SocksSeen] = []
    proxy = await serve(socks5_proxy(seen))
    client = make_client(proxy=f"socks5h://127.0.0.1:{proxy.port}", ssl_context=trusting)

    assert await fetch(client, origin.url("/secure")) == b"GET /secure HTTP/1.1"
    assert seen == [SocksSeen("127.0.0.1", origin.port, None)]


async def test_a_socks5_login_refused_is_a_connect_error(
    serve: Serve, make_client: MakeClient
) -> None:
    origin = await serve(answering(ok(b"secret")))
    seen: list[SocksSeen] = []
    proxy = await serve(socks5_proxy(seen, login=("user", "pass")))
    client = make_client(proxy=f"socks5://user:wrong@127.0.0.1:{proxy.port}")

    with pytest.raises(ConnectError):
        await asyncio.wait_for(client.get(origin.url("/")), 10)
    assert seen == [] and origin.accepted == 0


async def test_http_through_an_https_proxy(
    serve: Serve, make_client: MakeClient, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    proxy = await serve(forward_proxy(), ssl_context=server_tls)
    client = make_client(proxy=f"https://127.0.0.1:{proxy.port}", ssl_context=trusting)

    assert await fetch(client, "http://127.0.0.1:9/path") == b"from the proxy"
    [request] = proxy.requests
    assert request.line == "GET http://127.0.0.1:9/path HTTP/1.1"


async def test_https_through_an_https_proxy(
    serve: Serve, make_client: MakeClient, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    origin = await serve(answering(echoing_request_line), ssl_context=server_tls)
    proxy = await serve(forward_proxy(), ssl_context=server_tls)
    client = make_client(proxy=f"https://127.0.0.1:{proxy.port}", ssl_context=trusting)

    assert await fetch(client, origin.url("/inner")) == b"GET /inner HTTP/1.1"
    [connect] = proxy.requests
    assert connect.line == f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1"


def test_a_proxy_of_another_kind_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="proxy"):
        HttpClient(ClientOptions(proxy="ftp://127.0.0.1:21"))


async def test_an_origin_not_asked_again_is_forgotten(
    serve: Serve, make_client: MakeClient
) -> None:
    # A gateway meets the hosts of many origins over a day: what it keeps for one it no
    # longer asks (a slot, idle connections) must not pile up.
    servers = [await serve(answering(ok(b"x"))) for _ in range(3)]
    client = make_client(keepalive_seconds=0.2)
    for server in servers:
        assert await fetch(client, server.url("/")) == b"x"
    assert client.origins_known == 3

    await asyncio.sleep(0.3)
    last = await serve(answering(ok(b"y")))
    assert await fetch(client, last.url("/")) == b"y"

    assert client.origins_known == 1
    assert client.open_connections == 1
