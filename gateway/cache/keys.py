"""Cache keys: what makes two requests the same cached object."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from yarl import URL


def cache_key(
    upstream_url: str,
    *,
    range_header: str | None = None,
    ignore_params: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The upstream URL (minus per-viewer query parameters) and the byte range, if any."""
    key = upstream_url.split("#", 1)[0]
    if ignore_params and "?" in key:
        key = _drop_params(key, ignore_params)
    if range_header:
        key = f"{key} {range_header.strip().replace(' ', '')}"
    return key


def storage_name(key: str) -> str:
    """A fixed-length, filesystem-safe name for a cache key."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def _drop_params(url: str, ignore_params: Mapping[str, Sequence[str]]) -> str:
    host = (URL(url, encoded=True).host or "").lower()
    drop = {*ignore_params.get("*", ()), *ignore_params.get(host, ())}
    if not drop:
        return url
    base, _, query = url.partition("?")
    # Filter the raw query text so that the kept parameters stay byte-exact.
    kept = [part for part in query.split("&") if part.split("=", 1)[0] not in drop]
    return f"{base}?{'&'.join(kept)}" if kept else base
