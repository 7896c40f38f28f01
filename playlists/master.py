"""Multivariant playlists built from separate video and audio renditions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rendition:
    uri: str
    bandwidth: int | None = None  # bits per second
    codecs: str | None = None
    resolution: str | None = None  # "1280x720"
    name: str | None = None


def build_master(videos: list[Rendition], audio: Rendition | None) -> bytes:
    """One EXT-X-STREAM-INF per video rendition, all sharing one audio group when given."""
    if not videos:
        raise ValueError("a multivariant playlist needs at least one video rendition")
    lines = ["#EXTM3U", "#EXT-X-VERSION:4", "#EXT-X-INDEPENDENT-SEGMENTS"]
    group = ""
    if audio is not None:
        name = _quoted(audio.name or "audio")
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="{name}",DEFAULT=YES,'
            f'AUTOSELECT=YES,URI="{_quoted(audio.uri)}"'
        )
        group = ',AUDIO="audio"'
    for video in videos:
        bandwidth = (video.bandwidth or 0) + (audio.bandwidth or 0 if audio else 0)
        attributes = [f"BANDWIDTH={bandwidth or 1}"]
        codecs = ",".join(c for c in (video.codecs, audio.codecs if audio else None) if c)
        if codecs:
            attributes.append(f'CODECS="{_quoted(codecs)}"')
        if video.resolution:
            attributes.append(f"RESOLUTION={video.resolution}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes) + group)
        lines.append(video.uri)
    return ("\n".join(lines) + "\n").encode()


def _quoted(value: str) -> str:
    # Quoted-string attribute values may not hold a double quote or a line break (RFC 8216 4.2).
    return value.replace('"', "'").replace("\r", " ").replace("\n", " ")
