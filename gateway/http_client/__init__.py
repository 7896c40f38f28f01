"""An HTTP/1.1 client for GET: kept-alive connections per origin, bounded per host, with the
answer read in the connection's own callbacks.

It does what the gateway's upstream requests need and no more: GET with headers, http and
https (also through an HTTP proxy: absolute-form requests, CONNECT for https), bodies
delimited by Content-Length, chunked or the connection's end, gzip and deflate decoded, 1xx
answers skipped, connect and read time limits, and a pooled connection that the server
closed meanwhile replaced once. Redirects, the address guard and what a status means are the
caller's (`gateway.upstream`).

Why not aiohttp's client: a cold miss waits for its upstream request, and aiohttp's
`ClientSession` took 235 of the gateway's 483 µs on the way to a miss's first byte (from
the request to its write, and the answer's head). Side by side with it, this client made a
cold miss's first byte 0.15-0.18 ms sooner and cost 0.35-1.27 ms less CPU per miss
(bench/HISTORY.md).

Modules: `framing` (an answer's head, its body's delimiting and decoding; pure),
`response` (a connection's protocol and the answer it reads), `client` (the pool, dialling,
proxies and TLS), `errors`.
"""

from gateway.http_client.client import (
    ClientOptions,
    HttpClient,
    Resolve,
    dns_addresses,
    proxy_url,
)
from gateway.http_client.errors import (
    ConnectError,
    ConnectTimeout,
    HttpError,
    ReadTimeout,
    ResponseError,
)
from gateway.http_client.response import CHUNK_BYTES, BodyChunk, Response

__all__ = [
    "CHUNK_BYTES",
    "BodyChunk",
    "ClientOptions",
    "ConnectError",
    "ConnectTimeout",
    "HttpClient",
    "HttpError",
    "ReadTimeout",
    "Resolve",
    "Response",
    "ResponseError",
    "dns_addresses",
    "proxy_url",
]
