"""A growing fill read by clients that keep up, fall behind, or arrive late."""

import asyncio
import os
import random

from gateway.cache.fill import RECENT_BYTES, Fill
from tests.support.fills import read_all


def random_chunks(total: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks, size = [], 0
    while size < total:
        chunk = os.urandom(rng.choice([1, 188, 4096, 65_536, 200_000]))
        chunks.append(chunk)
        size += len(chunk)
    return chunks


async def test_readers_at_any_pace_and_offset_get_exactly_the_body(tmp_path):
    chunks = random_chunks(3 * RECENT_BYTES, seed=1)
    body = b"".join(chunks)
    fill = Fill(tmp_path / "temp")
    keeping_up = asyncio.create_task(read_all(fill))
    lagging = asyncio.create_task(read_all(fill, pause=0.002))
    late: list[asyncio.Task[bytes]] = []
    for index, chunk in enumerate(chunks):
        fill.append(chunk)
        if index in (3, len(chunks) // 2):
            # Late arrivals: from the start (long out of the in-memory window), and from an
            # offset inside the newest chunk.
            late.append(asyncio.create_task(read_all(fill)))
            late.append(asyncio.create_task(read_all(fill, offset=fill.written - 7)))
        await asyncio.sleep(0)
    fill.finish()
    assert await keeping_up == body
    assert await lagging == body
    for task, start in zip(late, [0, None, 0, None], strict=True):
        got = await task
        if start == 0:
            assert got == body
        else:
            assert body.endswith(got) and len(got) > 0
    assert (tmp_path / "temp").read_bytes() == body


async def test_short_writes_are_carried_on_so_the_file_holds_the_whole_body(tmp_path, monkeypatch):
    # A disk that takes at most 64 KiB per call (as after a signal, or near full): the rest of
    # every chunk must still land at its own offset, or a hole would be committed as the body.
    real_pwrite = os.pwrite
    monkeypatch.setattr(
        os, "pwrite", lambda fd, data, offset: real_pwrite(fd, bytes(data[:65_536]), offset)
    )
    body = b"".join(random_chunks(1_000_000, seed=2))
    fill = Fill(tmp_path / "temp")
    for offset in range(0, len(body), 200_000):
        fill.append(body[offset : offset + 200_000])
        fill.flush()
    fill.finish()
    monkeypatch.undo()
    assert fill.on_disk and (tmp_path / "temp").read_bytes() == body


async def test_the_last_byte_of_an_expected_body_reaches_the_readers_only_at_finish(tmp_path):
    fill = Fill(tmp_path / "temp", expected=1010)
    early_got, late_got = bytearray(), bytearray()
    early = asyncio.create_task(read_all(fill, into=early_got))
    fill.append(b"a" * 1000)
    await asyncio.sleep(0.01)
    fill.append(b"b" * 10)  # the end of the body, before its commit
    late = asyncio.create_task(read_all(fill, into=late_got))  # a client that arrives now
    fill.flush()
    await asyncio.sleep(0.01)
    assert bytes(early_got) == bytes(late_got) == b"a" * 1000 + b"b" * 9
    assert (tmp_path / "temp").stat().st_size == 1010  # on disk all the same
    fill.finish()
    assert await early == await late == b"a" * 1000 + b"b" * 10


async def test_a_body_that_arrives_in_one_chunk_reaches_the_readers_before_finish(tmp_path):
    fill = Fill(tmp_path / "temp", expected=20_000)
    got = bytearray()
    reader = asyncio.create_task(read_all(fill, into=got))
    await asyncio.sleep(0)
    fill.append(b"s" * 20_000)  # a small object: its whole body is the first chunk
    await asyncio.sleep(0.01)
    assert bytes(got) == b"s" * 19_999
    fill.finish()
    assert await reader == b"s" * 20_000


async def test_the_temp_file_is_created_only_after_the_readers_had_the_first_chunk(tmp_path):
    temp = tmp_path / "temp"
    fill = Fill(temp)
    got = bytearray()
    reader = asyncio.create_task(read_all(fill, into=got))
    await asyncio.sleep(0)
    fill.append(b"first")
    await asyncio.sleep(0)
    assert bytes(got) == b"first" and not temp.exists()
    fill.flush()
    assert temp.read_bytes() == b"first"
    fill.append(b" second")
    fill.finish()
    assert await reader == b"first second" and temp.read_bytes() == b"first second"


async def test_a_temp_file_the_disk_refuses_leaves_the_readers_every_byte(tmp_path):
    fill = Fill(tmp_path / "missing-directory" / "temp")
    reader = asyncio.create_task(read_all(fill))
    body = [os.urandom(70_000) for _ in range(20)]  # more than the in-memory window
    for chunk in body:
        fill.append(chunk)
        fill.flush()
        await asyncio.sleep(0)
    late = asyncio.create_task(read_all(fill))
    fill.finish()
    assert await reader == await late == b"".join(body)
    assert not fill.on_disk and isinstance(fill.disk_failed, FileNotFoundError)
