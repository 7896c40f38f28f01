"""HLS playlists written from scratch for a file the gateway segments itself."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VodSegment:
    uri: str
    duration: float


@dataclass(frozen=True, slots=True)
class Variant:
    uri: str
    bandwidth: int
    codecs: str
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None


def media_playlist(segments: Sequence[VodSegment], *, map_uri: str | None = None) -> str:
    """A finished VOD media playlist; `map_uri` makes it fMP4 (EXT-X-MAP, version 7)."""
    if not segments:
        raise ValueError("a playlist needs at least one segment")
    # RFC 8216 §4.3.3.1: the rounded EXTINF of every segment must not exceed it.
    target = max(1, max(math.floor(s.duration + 0.5) for s in segments))
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{7 if map_uri else 3}",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    if map_uri:
        lines.append(f'#EXT-X-MAP:URI="{map_uri}"')
    for segment in segments:
        lines.append(f"#EXTINF:{segment.duration:.6f},")
        lines.append(segment.uri)
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def master_playlist(variants: Sequence[Variant]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in variants:
        attributes = [f"BANDWIDTH={variant.bandwidth}", f'CODECS="{variant.codecs}"']
        if variant.resolution is not None:
            attributes.append(f"RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}")
        if variant.frame_rate:
            attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(variant.uri)
    return "\n".join(lines) + "\n"
