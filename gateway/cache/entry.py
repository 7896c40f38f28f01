"""What the cache knows about one stored object."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import cast

# An entry's fields in order (`Entry.as_row`).
Row = tuple[str | int | float | None, ...]


@dataclass(frozen=True, slots=True)
class Entry:
    """A complete, length-checked object on disk."""

    name: str  # storage name (sha256 of the key); the file's name on disk
    key: str
    size: int
    content_type: str
    status: int = 200  # 206 for an entry that holds one byte range of a larger object
    content_range: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    stored_at: float = 0.0

    def to_json(self) -> str:
        # Every field is a plain value: no deep copy (`asdict`) needed on each commit.
        return json.dumps({name: getattr(self, name) for name in _FIELDS}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Entry:
        return cls(**json.loads(text))

    def as_row(self) -> Row:
        """The fields in order, as a plain tuple: one of strings and numbers only, which the
        garbage collector stops tracking (an `Entry` it walks in every full collection)."""
        return tuple([getattr(self, name) for name in _FIELDS])

    @classmethod
    def from_row(cls, row: Row) -> Entry:
        return cls(*row)  # type: ignore[arg-type]


_FIELDS = tuple(field.name for field in fields(Entry))
_SIZE_IN_ROW = _FIELDS.index("size")


def size_of_row(row: Row) -> int:
    return cast(int, row[_SIZE_IN_ROW])
