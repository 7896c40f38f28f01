"""Temp files made ahead for fills: ready when a miss needs one, never left behind."""

import asyncio
import os

from gateway.cache.fill import Fill
from gateway.cache.store import DiskStore
from gateway.cache.temp_files import TempFiles


async def settled(temps: TempFiles) -> None:
    for _ in range(200):
        await asyncio.sleep(0.005)
        if temps._refilling is None:
            return


async def test_after_the_first_take_files_are_ready_created_and_open(tmp_path):
    store = DiskStore(tmp_path)
    store.prepare()
    temps = TempFiles(store, ahead=3)
    first_path, first_fd = temps.take()
    assert first_fd is None and not first_path.exists()  # nothing made yet: the caller creates
    await settled(temps)
    assert len(list(store.tmp.iterdir())) == 3
    taken = [temps.take() for _ in range(3)]
    for path, fd in taken:
        assert fd is not None and path.parent == store.tmp
        os.write(fd, b"abc")
        assert path.read_bytes() == b"abc"  # the descriptor is that path's file
        os.close(fd)
    assert len({path for path, _ in taken}) == 3
    await settled(temps)
    await temps.close()
    assert sorted(p.name for p in store.tmp.iterdir()) == sorted(p.name for p, _ in taken)


async def made_ahead(tmp_path, ahead: int, low: int = 4) -> tuple[DiskStore, TempFiles]:
    """A store whose pool has made its files (the first take starts it)."""
    store = DiskStore(tmp_path)
    store.prepare()
    temps = TempFiles(store, ahead=ahead, low=low)
    temps.take()
    await settled(temps)
    return store, temps


async def test_closing_removes_the_files_made_ahead(tmp_path):
    store, temps = await made_ahead(tmp_path, 4)
    assert len(list(store.tmp.iterdir())) == 4
    await temps.close()
    assert list(store.tmp.iterdir()) == []
    assert temps.take()[1] is None  # closed: no more made ahead
    await asyncio.sleep(0.05)
    assert list(store.tmp.iterdir()) == []


async def test_a_fill_on_a_file_made_ahead_reads_back_its_body(tmp_path):
    _, temps = await made_ahead(tmp_path, 1)
    path, fd = temps.take()
    fill = Fill(path, fd=fd)
    body = os.urandom(3 * 1024 * 1024)
    for offset in range(0, len(body), 65_536):
        fill.append(body[offset : offset + 65_536])
    fill.finish()
    assert fill.on_disk and path.read_bytes() == body
    await temps.close()


async def test_files_are_made_in_batches_not_one_per_take(tmp_path):
    store, temps = await made_ahead(tmp_path, ahead=8, low=3)
    assert len(list(store.tmp.iterdir())) == 8
    kept = [temps.take() for _ in range(5)]  # leaves 3: no refill yet
    await settled(temps)
    assert len(list(store.tmp.iterdir())) == 8
    kept.append(temps.take())  # leaves 2, below 3: one refill makes the pool full again
    await settled(temps)
    assert len(list(store.tmp.iterdir())) == 6 + 8
    assert len(temps.spares()) == 8
    for _, fd in kept:
        os.close(fd)
    await temps.close()
