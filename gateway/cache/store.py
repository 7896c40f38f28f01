"""Objects on disk: temp files that become entries only by an atomic rename."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from gateway.cache.entry import Entry

log = logging.getLogger("gateway.cache")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DiskStore:
    """`objects/ab/<name>` holds the bytes, `<name>.json` beside it the entry; `tmp/` the fills."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root_text = str(root)
        self.objects = root / "objects"
        self.tmp = root / "tmp"

    def prepare(self) -> None:
        """Create the layout and delete temp files left by processes that died mid-fill."""
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():
            owner = leftover.name.split("-", 1)[0]
            if not owner.isdigit() or int(owner) == os.getpid() or not _pid_alive(int(owner)):
                with contextlib.suppress(OSError):
                    leftover.unlink()

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
        meta = final.with_name(final.name + ".json")
        meta_temp = temp.with_name(temp.name + ".json")
        try:
            meta_temp.write_text(entry.to_json())
            if mtime is not None:
                os.utime(temp, (mtime, mtime))
            try:
                os.replace(meta_temp, meta)
            except FileNotFoundError:
                # The shard directory is made on first use: a mkdir before every commit
                # cost 0.2 ms on a journalled disk even when the directory existed.
                final.parent.mkdir(exist_ok=True)
                os.replace(meta_temp, meta)
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
        for path in (final, final.with_name(final.name + ".json")):
            with contextlib.suppress(OSError):
                path.unlink()

    def scan(self) -> Iterator[tuple[Entry, float]]:
        """Every committed entry with its last-modified time; half-written pairs are removed."""
        if not self.objects.is_dir():
            return
        for shard in self.objects.iterdir():
            if not shard.is_dir():
                continue
            for meta in shard.glob("*.json"):
                data = meta.with_suffix("")
                try:
                    entry = Entry.from_json(meta.read_text())
                    stat = data.stat()
                except (OSError, ValueError, TypeError):
                    self.remove(meta.stem)
                    continue
                if stat.st_size != entry.size or entry.name != data.name:
                    self.remove(meta.stem)
                    continue
                yield entry, meta.stat().st_mtime
            for data in shard.iterdir():
                if data.suffix != ".json" and not data.with_name(data.name + ".json").exists():
                    with contextlib.suppress(OSError):
                        data.unlink()

    def disk_usage(self) -> int:
        total = 0
        for path in self.objects.rglob("*"):
            if path.is_file() and path.suffix != ".json":
                total += path.stat().st_size
        return total
