"""`hls-gateway serve` with a timestamp at each step of a cold miss, for `bench.miss_trace`.

    GATEWAY_TRACE_FILE=steps.jsonl python -m bench.traced_gateway serve

One worker, sequential requests: each request the connection receives starts a row, and
the steps of the miss it causes are stamped on that row with `time.perf_counter_ns()`
(CLOCK_MONOTONIC, so the load generator's own stamps are on the same clock). The rows are
written when the process exits. The wrappers cost a microsecond or two per step; a step a miss does not take (a second
lookup, say) is left out of its row.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import client_proto, client_reqrep, connector, http_writer

from gateway import broadcast, cli, fetcher, lane_connection, lane_waits, upstream
from gateway.cache import segments
from gateway.fetcher import MediaHead

ROWS: list[dict[str, int]] = []
_clock = time.perf_counter_ns


def _stamp(step: str) -> None:
    if ROWS:
        ROWS[-1].setdefault(step, _clock())


def install() -> None:
    received = lane_connection.LaneRequestHandler.data_received

    def data_received(self: Any, data: bytes) -> None:
        ROWS.append({"request in": _clock()})
        received(self, data)

    sent = http_writer.StreamWriter._write

    def write_upstream(self: Any, chunk: Any) -> None:
        sent(self, chunk)
        _stamp("upstream request sent")

    arrived = client_proto.ResponseHandler.data_received

    def upstream_data(self: Any, data: bytes) -> None:
        _stamp("upstream bytes in")
        arrived(self, data)

    opened = upstream.UpstreamClient.open

    async def open_upstream(self: Any, *args: Any, **kwargs: Any) -> Any:
        _stamp("upstream asked")
        response = await opened(self, *args, **kwargs)
        _stamp("upstream head")
        return response

    settled = broadcast.Broadcast.set_result

    def set_result(self: Any, value: Any) -> None:
        if isinstance(value, MediaHead):
            _stamp("head handed over")
        settled(self, value)

    written: Callable[..., None] = lane_waits._write

    def write(connection: Any, pieces: Any) -> None:
        _stamp("first write")
        written(connection, pieces)

    routed = lane_waits.WaitedAnswers.pending

    def pending(self: Any, request: Any) -> Any:
        found = routed(self, request)
        _stamp("routed")
        return found

    served = lane_waits.WaitedAnswers.serve

    async def serve(self: Any, *args: Any) -> Any:
        _stamp("answer task runs")
        return await served(self, *args)

    looked_up = segments.SegmentCache.lookup

    async def lookup(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = await looked_up(self, *args, **kwargs)
        _stamp("looked up" if ROWS and "looked up" not in ROWS[-1] else "looked up again")
        return found

    flown = fetcher.Fetcher._fly

    async def fly(self: Any, *args: Any) -> Any:
        _stamp("flight task runs")
        return await flown(self, *args)

    requested = aiohttp.ClientSession._request

    async def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        _stamp("aiohttp's request")
        return await requested(self, *args, **kwargs)

    connected = connector.BaseConnector.connect

    async def connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        _stamp("pool asked")
        connection = await connected(self, *args, **kwargs)
        _stamp("pooled connection")
        return connection

    send = client_reqrep.ClientRequest.send

    async def send_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        _stamp("request built")
        return await send(self, *args, **kwargs)

    lane_connection.LaneRequestHandler.data_received = data_received  # type: ignore[method-assign]
    lane_waits.WaitedAnswers.pending = pending  # type: ignore[method-assign]
    lane_waits.WaitedAnswers.serve = serve  # type: ignore[method-assign]
    segments.SegmentCache.lookup = lookup  # type: ignore[method-assign]
    fetcher.Fetcher._fly = fly  # type: ignore[method-assign]
    aiohttp.ClientSession._request = request  # type: ignore[method-assign]
    connector.BaseConnector.connect = connect  # type: ignore[method-assign]
    client_reqrep.ClientRequest.send = send_request  # type: ignore[method-assign]
    http_writer.StreamWriter._write = write_upstream  # type: ignore[method-assign]
    client_proto.ResponseHandler.data_received = upstream_data  # type: ignore[method-assign]
    upstream.UpstreamClient.open = open_upstream  # type: ignore[method-assign]
    broadcast.Broadcast.set_result = set_result  # type: ignore[method-assign]
    lane_waits._write = write
    atexit.register(_dump, os.environ["GATEWAY_TRACE_FILE"])


def _dump(path: str) -> None:
    with open(path, "w") as out:
        for row in ROWS:
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    install()
    sys.exit(cli.main())
