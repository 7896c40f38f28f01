"""An upstream response can stop being read for a moment (while its waiting clients send
what arrived), and is read on afterwards without losing a byte."""

import asyncio
import os

from gateway.settings import Settings
from gateway.upstream import UpstreamClient

SEG = "/ts/seg_000.ts"


def reading(response) -> bool:
    transport = response._response._connection.transport
    return transport.is_reading() and response._response.reading


async def test_held_reading_resumes_and_the_body_arrives_whole(origin, media, tmp_path):
    origin.behave(SEG, drip=(16 * 1024, 0.01))  # still arriving while it is held
    client = UpstreamClient(Settings(allow_private_upstreams=True, cache_dir=tmp_path))
    await client.start()
    try:
        response = await client.open(origin.base_url + SEG, ())
        assert reading(response)
        resume = response.hold_reading()
        assert not reading(response)
        resume()
        assert reading(response)
        body = await response.read(10 * 1024 * 1024)
        assert body == media.read(SEG)
        response.release()
    finally:
        await client.close()


async def test_reading_held_by_flow_control_is_left_alone(origin, tmp_path):
    big = os.urandom(1024 * 1024)  # more than the client buffers before it stops reading
    origin.set_file("/big.ts", big)
    origin.behave("/big.ts", drip=(64 * 1024, 0.01))
    client = UpstreamClient(Settings(allow_private_upstreams=True, cache_dir=tmp_path))
    await client.start()
    try:
        response = await client.open(origin.base_url + "/big.ts", ())
        # Nothing is read from the body meanwhile, so the client's buffer fills and it stops
        # reading the socket by itself.
        for _ in range(200):
            if not reading(response):
                break
            await asyncio.sleep(0.01)
        assert not reading(response)
        resume = response.hold_reading()
        resume()
        assert not reading(response)  # a hold let go does not undo the buffer's pause
        # Reading drains the buffer, the socket is read again, and nothing was lost.
        assert await response.read(10 * 1024 * 1024) == big
        response.abort()
        response.hold_reading()()  # a closed connection: nothing to hold, nothing raised
    finally:
        await client.close()
