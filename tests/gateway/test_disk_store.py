"""Committed objects on disk: the entry travels with the object's bytes, as an attribute of
its file where the file system has them and in a file beside it where not, and a startup
scan reads both and keeps only objects that match their entry."""

import os
from pathlib import Path

import pytest

from gateway.cache.entry import Entry
from gateway.cache.store import ENTRY_ATTRIBUTE, DiskStore


def entry(name: str, size: int, stored_at: float = 1.0) -> Entry:
    return Entry(name, f"http://origin.test/{name}", size, "video/mp2t", stored_at=stored_at)


def commit(store: DiskStore, item: Entry, data: bytes) -> None:
    temp = store.new_temp()
    temp.write_bytes(data)
    store.commit(temp, item, mtime=1_000_000.0)


def files_under(store: DiskStore) -> list[str]:
    return sorted(p.name for p in store.objects.rglob("*") if p.is_file())


def takes_attributes(directory: Path) -> bool:
    scratch = directory / "scratch"
    scratch.write_bytes(b"")
    try:
        os.setxattr(scratch, "user.test", b"1")
    except OSError:
        return False
    finally:
        scratch.unlink()
    return True


def skip_without_attributes(directory: Path) -> None:
    """Tests of entries kept as attributes run where the file system has them (tmpfs before
    Linux 6.6 has none)."""
    if not takes_attributes(directory):
        pytest.skip("no user extended attributes here")


@pytest.fixture
def attributes_work(tmp_path):
    skip_without_attributes(tmp_path)


def test_the_store_finds_whether_the_file_system_takes_attributes(tmp_path):
    store = DiskStore(tmp_path)
    store.prepare()
    assert store.entry_attributes is takes_attributes(tmp_path)
    assert list(store.tmp.iterdir()) == []  # the probe is gone


@pytest.mark.usefixtures("attributes_work")
def test_an_entry_is_committed_on_the_objects_own_file(tmp_path):
    store = DiskStore(tmp_path)
    store.prepare()
    item = entry("ab" * 32, 5)
    commit(store, item, b"12345")
    path = store.path_of(item.name)
    assert files_under(store) == [item.name]  # nothing beside it
    assert Entry.from_json(os.getxattr(path, ENTRY_ATTRIBUTE)) == item
    assert path.read_bytes() == b"12345" and path.stat().st_mtime == 1_000_000.0
    assert list(store.scan()) == [(item, 1.0)]


def test_without_attributes_the_entry_goes_in_a_file_beside(tmp_path):
    store = DiskStore(tmp_path, entry_attributes=False)
    store.prepare()
    item = entry("cd" * 32, 3)
    commit(store, item, b"abc")
    assert files_under(store) == [item.name, item.name + ".json"]
    with pytest.raises(OSError):
        os.getxattr(store.path_of(item.name), ENTRY_ATTRIBUTE)
    assert list(store.scan()) == [(item, 1.0)]


def test_a_scan_reads_both_kinds_and_orders_by_when_stored(tmp_path):
    beside = DiskStore(tmp_path, entry_attributes=False)  # an older cache, or another host
    beside.prepare()
    old = entry("01" * 32, 4, stored_at=10.0)
    commit(beside, old, b"old!")
    store = DiskStore(tmp_path)
    store.prepare()
    new = entry("02" * 32, 4, stored_at=20.0)
    commit(store, new, b"new!")
    assert sorted(store.scan(), key=lambda pair: pair[1]) == [(old, 10.0), (new, 20.0)]


@pytest.mark.parametrize("attributes", [True, False])
def test_a_scan_removes_what_does_not_match_its_entry(tmp_path, attributes):
    if attributes:
        skip_without_attributes(tmp_path)
    store = DiskStore(tmp_path, entry_attributes=attributes)
    store.prepare()
    kept, cut = entry("0a" * 32, 4), entry("0b" * 32, 4)
    commit(store, kept, b"kept")
    commit(store, cut, b"cut!")
    with store.path_of(cut.name).open("r+b") as file:
        file.truncate(2)  # shorter than its entry says
    orphan = store.path_of("0c" * 32)  # bytes whose entry never got written
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"half")
    stray = store.path_of("0d" * 32).with_name("0d" * 32 + ".json")  # an entry without bytes
    stray.parent.mkdir(exist_ok=True)
    stray.write_text(entry("0d" * 32, 1).to_json())

    assert [found for found, _ in store.scan()] == [kept]
    assert files_under(store) == [kept.name] + ([] if attributes else [kept.name + ".json"])


@pytest.mark.usefixtures("attributes_work")
def test_an_entry_too_large_for_an_attribute_goes_beside(tmp_path):
    # Past the kernel's 64 KiB for any attribute value; ext4 refuses past about 4 KB already.
    store = DiskStore(tmp_path)
    store.prepare()
    signed = Entry(
        "ee" * 32, "http://origin.test/seg.ts?sig=" + "s" * 70_000, 4, "video/mp2t", stored_at=1.0
    )
    fits = entry("ef" * 32, 4)
    commit(store, signed, b"long")
    commit(store, fits, b"fits")
    assert files_under(store) == sorted([signed.name, signed.name + ".json", fits.name])
    assert {found.name: found for found, _ in store.scan()} == {e.name: e for e in (signed, fits)}
