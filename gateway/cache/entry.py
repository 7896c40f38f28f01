"""What the cache knows about one stored object."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


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
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Entry:
        return cls(**json.loads(text))
