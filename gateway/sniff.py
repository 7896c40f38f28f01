"""Content types from the bytes themselves, because upstreams mislabel segments."""

from __future__ import annotations

_MP4_BOXES = (b"ftyp", b"styp", b"moof", b"sidx", b"moov", b"emsg", b"prft", b"free", b"mdat")
_BY_EXTENSION = {
    "ts": "video/mp2t",
    "m2ts": "video/mp2t",
    "aac": "audio/aac",
    "mp3": "audio/mpeg",
    "m4s": "video/iso.segment",
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "m4a": "audio/mp4",
    "cmfv": "video/mp4",
    "cmfa": "audio/mp4",
    "vtt": "text/vtt",
    "webvtt": "text/vtt",
    "key": "application/octet-stream",
    "json": "application/json",
}
HLS_TYPE = "application/vnd.apple.mpegurl"
DASH_TYPE = "application/dash+xml"


def sniff_content_type(head: bytes, upstream_type: str | None, path: str) -> str:
    """The type a player needs: signatures first, then a believable upstream type, then the name."""
    # Media is never shorter than one TS packet; a 16-byte AES key must not look like media.
    substantial = len(head) >= 188
    if substantial and head[0] == 0x47 and (len(head) < 189 or head[188] == 0x47):
        return "video/mp2t"
    if len(head) >= 8 and head[4:8] in _MP4_BOXES:
        return "video/mp4"
    if substantial and (head.startswith(b"ID3") or (head[0] == 0xFF and head[1] & 0xF6 == 0xF0)):
        return "audio/aac"
    if head.lstrip(b"\xef\xbb\xbf").startswith(b"WEBVTT"):
        return "text/vtt"
    declared = (upstream_type or "").split(";", 1)[0].strip().lower()
    if (
        declared
        and not declared.startswith(("image/", "text/html"))
        and declared
        not in (
            "application/octet-stream",
            "binary/octet-stream",
            "text/plain",
        )
    ):
        return declared
    extension = path.split("?", 1)[0].rsplit("/", 1)[-1].rpartition(".")[2].lower()
    return _BY_EXTENSION.get(extension, declared or "application/octet-stream")
