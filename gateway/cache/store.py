"""Objects on disk: temp files that become entries only by an atomic rename.

An object's entry travels with its bytes, as an extended attribute of the file, so the
rename that makes the object visible commits both at once. Creating a separate metadata
file took 0.2-0.3 ms of the event loop per commit on a journalled disk, against 8 us for
the attribute and the rename. On a file system without user extended attributes (tmpfs
before Linux 6.6, some network file systems) the entry goes in a `<name>.json` file beside
the object instead, and a startup scan reads either.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from gateway.cache.entry import Entry

log = logging.getLogger("gateway.cache")

ENTRY_ATTRIBUTE = "user.hls-gateway.entry"
_SIDECAR = ".json"
_NO_ATTRIBUTE = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)
# What setting an attribute larger than the file system takes raises (ext4: ENOSPC past
# about 4 KB, though the disk has room).
_TOO_LARGE = (errno.ENOSPC, errno.E2BIG, errno.ERANGE)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DiskStore:
    """`objects/ab/<name>` holds the bytes (and the entry, as an attribute); `tmp/` the fills.

    `entry_attributes`: whether entries go in an extended attribute (None: as the file
    system allows, found out by `prepare()`), else in a file beside each object.
    """

    def __init__(self, root: Path, entry_attributes: bool | None = None) -> None:
        self.root = root
        self._root_text = str(root)
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        self.entry_attributes = entry_attributes

    def prepare(self) -> None:
        """Create the layout and delete temp files left by processes that died mid-fill."""
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():
            owner = leftover.name.split("-", 1)[0]
            if not owner.isdigit() or int(owner) == os.getpid() or not _pid_alive(int(owner)):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        if self.entry_attributes is None:
            self.entry_attributes = _attributes_work(self.new_temp())
            if not self.entry_attributes:
                log.info("no extended attributes under %s: entries go in files beside", self.root)

    def path_of(self, name: str) -> Path:
        return Path(self.text_path(name))

    def text_path(self, name: str) -> str:
        """`path_of` as text (a `Path` costs more to make than the stat it is made for)."""
        return f"{self._root_text}/{self.relative_of(name)}"

    @staticmethod
    def relative_of(name: str) -> str:
        """Where `name` lives, relative to the root (what X-Accel-Redirect points into)."""
        return f"objects/{name[:2]}/{name}"

    def new_temp(self) -> Path:
        return self.tmp / f"{os.getpid()}-{secrets.token_hex(8)}"

    def commit(self, temp: Path, entry: Entry, mtime: float | None = None) -> Path:
        """Make `temp` the object for `entry`. The data rename is the commit point."""
        final = self.path_of(entry.name)
        if not (self.entry_attributes and _set_entry(temp, entry)):
            return self._commit_beside(temp, entry, final, mtime)
        if mtime is not None:
            os.utime(temp, (mtime, mtime))
        _rename_into_shard(temp, final)
        return final

    def _commit_beside(self, temp: Path, entry: Entry, final: Path, mtime: float | None) -> Path:
        meta = final.with_name(final.name + _SIDECAR)
        meta_temp = temp.with_name(temp.name + _SIDECAR)
        try:
            meta_temp.write_text(entry.to_json())
            if mtime is not None:
                os.utime(temp, (mtime, mtime))
            _rename_into_shard(meta_temp, meta)
            os.replace(temp, final)
        except OSError:
            # Half a commit is no commit: neither a stray temp nor a metadata file without
            # its object (or beside an older one) may outlive it.
            for path in (meta_temp, meta):
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        return final

    def discard(self, temp: Path) -> None:
        with contextlib.suppress(OSError):
            temp.unlink()

    def remove(self, name: str) -> None:
        final = self.path_of(name)
        for path in (final, final.with_name(final.name + _SIDECAR)):
            with contextlib.suppress(OSError):
                path.unlink()

    def scan(self) -> Iterator[tuple[Entry, float]]:
        """Every committed entry and when it was stored; objects whose entry is missing or
        does not match them are removed, and so are entry files without their object."""
        if not self.objects.is_dir():
            return
        for shard in self.objects.iterdir():
            if not shard.is_dir():
                continue
            for path in shard.iterdir():
                if path.suffix == _SIDECAR:
                    if not path.with_suffix("").exists():
                        with contextlib.suppress(OSError):
                            path.unlink()
                    continue
                try:
                    entry = read_entry(path)
                    size = path.stat().st_size
                except (OSError, ValueError, TypeError):
                    entry = None
                if entry is None or size != entry.size or entry.name != path.name:
                    self.remove(path.name)
                    continue
                yield entry, entry.stored_at

    def disk_usage(self) -> int:
        total = 0
        for path in self.objects.rglob("*"):
            if path.is_file() and path.suffix != _SIDECAR:
                total += path.stat().st_size
        return total


def _set_entry(path: Path, entry: Entry) -> bool:
    """Store `entry` as an attribute of `path`; False if it is too large for one (a long
    signed URL in its key): then it goes beside, and on a disk that is really full that
    fails as well, as it should."""
    try:
        os.setxattr(path, ENTRY_ATTRIBUTE, entry.to_json().encode())
    except OSError as exc:
        if exc.errno not in _TOO_LARGE:
            raise
        return False
    return True


def _rename_into_shard(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except FileNotFoundError:
        # The shard directory is made on first use: a mkdir before every commit cost
        # 0.2 ms on a journalled disk even when the directory existed.
        target.parent.mkdir(exist_ok=True)
        os.replace(source, target)


def read_entry(path: Path) -> Entry | None:
    """The entry stored with the object at `path`, or beside it; None if neither is."""
    try:
        return Entry.from_json(os.getxattr(path, ENTRY_ATTRIBUTE))
    except OSError as exc:
        if exc.errno not in _NO_ATTRIBUTE:
            raise
    try:
        return Entry.from_json(path.with_name(path.name + _SIDECAR).read_bytes())
    except FileNotFoundError:
        return None


def _attributes_work(probe: Path) -> bool:
    try:
        probe.touch()
        os.setxattr(probe, ENTRY_ATTRIBUTE, b"{}")
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
