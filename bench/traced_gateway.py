"""`hls-gateway serve` with a timestamp at each step of a cold miss, for `bench.miss_trace`.

    GATEWAY_TRACE_FILE=steps.jsonl python -m bench.traced_gateway serve

One worker, sequential requests: each request the connection receives starts a row, and
the steps of the miss it causes are stamped on that row with `time.perf_counter_ns()`
(CLOCK_MONOTONIC, so the load generator's own stamps are on the same clock). The rows are
written when the process exits. The wrappers cost a microsecond or two per step; a step a
miss does not take (a second lookup, say) is left out of its row.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from typing import Any

from gateway import broadcast, cli, fetcher, lane_connection, lane_waits, upstream
from gateway.cache import segments, shared_flight
from gateway.fetcher import MediaHead
from gateway.http_client import client, response

ROWS: list[dict[str, int]] = []
_clock = time.perf_counter_ns


def _stamp(*steps: str) -> None:
    """Stamp the first of `steps` the current row does not have yet."""
    if ROWS:
        row = ROWS[-1]
        for step in steps:
            if step not in row:
                row[step] = _clock()
                return


def _around(
    owner: Any, name: str, before: tuple[str, ...] = (), after: tuple[str, ...] = ()
) -> None:
    """Stamp `before` as `owner.name` is called and `after` as it returns."""
    original = getattr(owner, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        if before:
            _stamp(*before)
        result = original(*args, **kwargs)
        if after:
            _stamp(*after)
        return result

    setattr(owner, name, call)


def _around_async(
    owner: Any, name: str, before: tuple[str, ...] = (), after: tuple[str, ...] = ()
) -> None:
    """`_around` for a coroutine method: `after` once it has finished."""
    original = getattr(owner, name)

    async def call(*args: Any, **kwargs: Any) -> Any:
        if before:
            _stamp(*before)
        result = await original(*args, **kwargs)
        if after:
            _stamp(*after)
        return result

    setattr(owner, name, call)


def install() -> None:
    received = lane_connection.LaneRequestHandler.data_received

    def data_received(self: Any, data: bytes) -> None:
        ROWS.append({"request in": _clock()})
        received(self, data)

    lane_connection.LaneRequestHandler.data_received = data_received  # type: ignore[method-assign]
    settled = broadcast.Broadcast.set_result

    def set_result(self: Any, value: Any) -> None:
        if isinstance(value, MediaHead):
            _stamp("head handed over")
        settled(self, value)

    broadcast.Broadcast.set_result = set_result  # type: ignore[method-assign]
    _around(lane_waits.WaitedAnswers, "pending", after=("routed",))
    _around_async(lane_waits.WaitedAnswers, "serve", before=("answer task runs",))
    _around_async(segments.SegmentCache, "lookup", after=("looked up", "looked up again"))
    _around_async(fetcher.Fetcher, "_fly", before=("flight task runs",))
    _around_async(shared_flight.FlightLocks, "claim", ("claim asked",), ("claimed",))
    _around_async(upstream.UpstreamClient, "open", ("upstream asked",), ("upstream head",))
    _around_async(client.HttpClient, "get", before=("client's request",))
    _around(client, "request_bytes", after=("request built",))
    _around(client.HttpClient, "_checkout", ("pool asked",), ("pooled connection",))
    _around_async(response.Response, "read_head", before=("upstream request sent",))
    _around(response.Connection, "data_received", before=("upstream bytes in",))
    _around(lane_waits, "_write", before=("first write",))
    atexit.register(_dump, os.environ["GATEWAY_TRACE_FILE"])


def _dump(path: str) -> None:
    with open(path, "w") as out:
        for row in ROWS:
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    install()
    sys.exit(cli.main())
