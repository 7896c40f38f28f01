"""HLS playlists (RFC 8216bis): recognise, inspect, and rewrite every URI they carry.

The rewrite is a single line-based pass that changes only the characters of URIs that must
change; everything else (BOM, line endings, unknown tags, attribute order and quoting) comes
out byte-identical. A full parse and dump would cost two orders of magnitude more on long
live playlists and would normalise what players or CDNs may depend on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from playlists.errors import PlaylistError
from playlists.urls import directory_of, inside, resolve

__all__ = ["URI_TAGS", "PlaylistInfo", "inspect", "is_playlist", "rewrite", "segment_urls"]

MakeRef = Callable[[str], str]

# Tags whose URI= attribute names a resource (RFC 8216bis). A tag outside this table that
# still carries URI="..." (vendor tags such as EXT-X-IMAGE-STREAM-INF or EXT-X-TILES) gets the
# same treatment: a URI attribute left pointing at the origin would let the player bypass the
# gateway, and would fail outright when the origin only answers the gateway.
URI_TAGS = frozenset(
    {
        "EXT-X-MEDIA",
        "EXT-X-I-FRAME-STREAM-INF",
        "EXT-X-KEY",
        "EXT-X-SESSION-KEY",
        "EXT-X-MAP",
        "EXT-X-PART",
        "EXT-X-PRELOAD-HINT",
        "EXT-X-RENDITION-REPORT",
        "EXT-X-SESSION-DATA",
    }
)
# EXTINF's payload is a duration and a free-text title, not an attribute list: a title that
# happens to read `URI="..."` is not a reference.
_NOT_ATTRIBUTE_LISTS = frozenset({"EXTINF", "EXTM3U", "EXT-X-BYTERANGE", "EXT-X-PROGRAM-DATE-TIME"})

# RFC 8216 puts #EXTM3U first, but real origins (and parsers such as videojs') put comment
# lines before it; a player would still play such a playlist, so it must be rewritten too.
_HEAD = re.compile(rb"(?:\xef\xbb\xbf)?(?:[ \t\r\n\f\v]*#(?!EXT)[^\n]*\n)*[ \t\r\n\f\v]*#EXTM3U")
# One attribute of an attribute list, anchored where the previous one ended. The lookahead
# refuses a partial match, so a malformed item is skipped whole instead of being misread.
_ATTRIBUTE = re.compile(
    r'[ \t]*([A-Za-z0-9_-]+)[ \t]*=[ \t]*(?:"([^"\r\n]*)"|[^,"\r\n]*)[ \t]*(?=,|\r?\Z)'
)
# What a malformed item spans: up to the next comma that is not inside a quoted string.
_JUNK = re.compile(r'(?:"[^"\r\n]*"?|[^,"\r\n])*')
_VARIABLE = re.compile(r"\{\$([A-Za-z0-9_-]+)\}")
_DATERANGE_URI = re.compile(r"X-(?:[A-Z0-9-]*-)?(?:URI|URL)|X-ASSET-LIST")
# A relative name made of unreserved characters, with no dot segment and no percent escape in
# its path: it resolves to the playlist's own directory plus itself, with no RFC 3986 work.
_PLAIN = re.compile(r"(?![./])(?![^?]*/\.)[\w\-.~!$&'()*+,;=@/]+(?:\?[^#\s]*)?")
# The same, for a whole-text check: the bytes a plain name (or its query) may use.
_PLAIN_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=@/?\n"
_URI_LINES = re.compile(r"\n[^#\n][^\n]*")
_URI_LINE_START = re.compile(r"\n(?=[^#\n])")
# URI lines reduced to what follows their shared directory: a name with no `/`, then maybe a
# query; nothing a player or `resolve` would read differently from the plain text.
_FLAT_NAMES = re.compile(r"(?:\n[^\s/?#{}\\]+(?:\?[^\s#]*)?)+")
# The bytes those lines may hold in the common case: printable ASCII but `#{}\`, and newlines.
_FLAT_NAME_BYTES = bytes(sorted(set(range(0x21, 0x7F)) - set(b"#{}\\"))) + b"\n"
# Written in lower case: the fast paths take only these spellings, `_is_http` any case.
_HTTP = ("http://", "https://")
_WHITESPACE = " \t\r\f\v"
# Tags that need a look even without `URI` in them.
_SPECIAL = ("#EXT-X-DEFINE:", "#EXT-X-DATERANGE:")
# What a tag line that may carry a URI holds (in a playlist without variables).
_URI_TAG_NEEDLES = ("URI", "#EXT-X-DATERANGE:")

_TARGET_DURATION = re.compile(rb"^[ \t]*#EXT-X-TARGETDURATION:[ \t]*([0-9.]+)", re.MULTILINE)
_MEDIA_SEQUENCE = re.compile(rb"^[ \t]*#EXT-X-MEDIA-SEQUENCE:[ \t]*([0-9]+)", re.MULTILINE)
_PLAYLIST_TYPE = re.compile(rb"^[ \t]*#EXT-X-PLAYLIST-TYPE:[ \t]*([A-Za-z]+)", re.MULTILINE)
_VARIANT_TAGS = (b"#EXT-X-STREAM-INF", b"#EXT-X-I-FRAME-STREAM-INF", b"#EXT-X-MEDIA:")


def is_playlist(head: bytes) -> bool:
    """Whether a body (or its first bytes) is an M3U8 playlist: `#EXTM3U` after an optional BOM,
    leading whitespace and comment lines."""
    return _HEAD.match(head) is not None


@dataclass(frozen=True, slots=True)
class PlaylistInfo:
    is_master: bool
    has_endlist: bool
    target_duration: float | None
    media_sequence: int
    playlist_type: str | None

    @property
    def is_live(self) -> bool:
        """A media playlist that may still grow, so it must be re-fetched."""
        return not self.is_master and not self.has_endlist and self.playlist_type != "VOD"


def inspect(body: bytes) -> PlaylistInfo:
    """What caching needs to know about a playlist, read without a full parse.

    Tolerant by design: a value that does not parse counts as absent, since the caller only
    picks cache lifetimes from these and must not fail a playable stream over them.
    """
    has_segments = b"#EXTINF" in body
    has_variants = any(tag in body for tag in _VARIANT_TAGS)
    target = _TARGET_DURATION.search(body)
    sequence = _MEDIA_SEQUENCE.search(body)
    kind = _PLAYLIST_TYPE.search(body)
    target_duration: float | None = None
    if target:
        try:
            target_duration = float(target.group(1))
        except ValueError:
            target_duration = None
    return PlaylistInfo(
        is_master=has_variants and not has_segments,
        has_endlist=b"#EXT-X-ENDLIST" in body,
        target_duration=target_duration,
        media_sequence=int(sequence.group(1)) if sequence else 0,
        playlist_type=kind.group(1).decode("ascii").upper() if kind else None,
    )


def rewrite(
    body: bytes,
    *,
    base_url: str,
    keep_relative_inside: str | None,
    make_ref: MakeRef,
    directory_ref: MakeRef | None = None,
) -> bytes:
    """Point every URI in `body` back at the gateway.

    `base_url` is the playlist's final upstream URL. Relative URIs that resolve inside
    `keep_relative_inside` (the directory the playlist's own gateway URL maps) stay exactly as
    written; every other http(s) URI becomes `make_ref(absolute_upstream_url)`. URIs that are
    not http(s) (`skd:`, `data:`, ...) and URIs with variables this playlist does not define
    stay as written.

    `directory_ref(d)`, when given, must be what `make_ref(d + name)` starts with for any
    name without `/`: a playlist whose URI lines are all absolute URLs in one directory (the
    usual CDN shape) is then rewritten with one text replacement instead of a step per line.
    """
    bom, text = _decode(body)
    rewriter = _Rewriter(base_url, keep_relative_inside, make_ref)
    # Every URI line, each with the newline before it: whole-text checks pick a fast path.
    plain_text = "{$" not in text  # no variable to substitute anywhere
    uri_lines = "".join(_URI_LINES.findall(text)) if plain_text else ""
    directory = None
    if uri_lines and directory_ref is not None:
        directory = _one_absolute_directory(uri_lines)
    # Absolute URLs in one directory are not plain names: no need to look.
    all_plain = directory is None and plain_text and _uri_lines_all_plain(text, uri_lines)
    if rewriter.fast_keep and all_plain:
        moved = text  # every URI line stays as written
    elif all_plain and "/" not in uri_lines and "\r" not in uri_lines:
        # Flat names beside a playlist that is not kept: each is `make_ref(directory + name)`,
        # made in one pass over the lines instead of a parse per line; with `directory_ref`,
        # one prefix put before every URI line in one substitution.
        beside = rewriter.base_directory
        if directory_ref is not None and "$" not in beside:
            prefix = "\n" + directory_ref(beside).replace("\\", "\\\\")
            moved = _URI_LINE_START.sub(prefix, text)
        else:
            moved = "\n".join(
                [
                    line if not line or line[0] == "#" else make_ref(beside + line)
                    for line in text.split("\n")
                ]
            )
    elif directory is not None and directory_ref is not None:
        moved = text.replace("\n" + directory, "\n" + directory_ref(directory))
    else:
        out = rewriter.every_line(text)
        return body if out is None else (bom + out).encode("utf-8")
    # The URI lines are done; the tag lines stay as they are unless one may carry a URI,
    # looked for in the text before its URI lines grew (a signed prefix can double it).
    tagged = rewriter.tag_lines(moved) if any(n in text for n in _URI_TAG_NEEDLES) else None
    out = tagged if tagged is not None else (None if moved is text else moved)
    return body if out is None else (bom + out).encode("utf-8")


def _one_absolute_directory(uri_lines: str) -> str | None:
    """The directory every URI line names as `<directory><name>`, if there is one: absolute
    http(s), no dot segments, fragments or whitespace, and no `/` in any name."""
    first = uri_lines[1:].partition("\n")[0]
    head = first.partition("?")[0]
    if not head.startswith(_HTTP):
        return None
    directory = head[: head.rfind("/") + 1]
    if directory.count("/") < 3 or "$" in directory:
        return None  # no path after the host, or a template the reference maker treats apart
    marker = "\n" + directory
    lines = uri_lines.count("\n")
    if uri_lines.count(marker) != lines or "/." in uri_lines or "#" in uri_lines:
        return None
    # Every line starts with the marker. The usual names (printable ASCII, no `/` in name
    # or query, none empty) are confirmed with whole-text counts; anything else is left to
    # the regular expression, which costs several times more on a long playlist.
    if (
        uri_lines.isascii()
        and not uri_lines.encode("ascii").translate(None, _FLAT_NAME_BYTES)
        and uri_lines.count("/") == lines * directory.count("/")
        and marker + "\n" not in uri_lines
        and marker + "?" not in uri_lines
        and not uri_lines.endswith(marker)
    ):
        return directory
    return directory if _FLAT_NAMES.fullmatch(uri_lines.replace(marker, "\n")) else None


def segment_urls(body: bytes, *, base_url: str) -> list[str]:
    """The absolute URLs of a media playlist's whole segments, oldest first.

    Segments addressed by EXT-X-BYTERANGE are left out: they are slices of one resource and
    are cached per range, so fetching them ahead would not be reused.
    """
    _, text = _decode(body)
    reader = _Rewriter(base_url, None, str)
    urls: list[str] = []
    sliced = False
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            if line.startswith("#EXT-X-BYTERANGE"):
                sliced = True
            elif line.startswith("#EXT-X-DEFINE:"):
                reader.define(line, len("#EXT-X-DEFINE:"))
            continue
        if not sliced:
            absolute = reader.absolute(line)
            if absolute is not None:
                urls.append(absolute)
        sliced = False
    return urls


def _decode(body: bytes) -> tuple[str, str]:
    """(BOM or "", text after it), or PlaylistError for anything not safe to rewrite."""
    if not is_playlist(body):
        raise PlaylistError("not an HLS playlist (no #EXTM3U header)")
    if b"\x00" in body:
        raise PlaylistError("playlist contains NUL bytes")
    try:
        text = body.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise PlaylistError(f"playlist is not valid UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        return "\ufeff", text[1:]
    return "", text


def _uri_lines_all_plain(text: str, uri_lines: str) -> bool:
    """Whether every URI line is a plain relative name (see `_PLAIN`), checked with
    whole-text operations rather than line by line."""
    if not text.startswith("#"):
        return False
    blob = uri_lines + "\n"
    if not blob.isascii():
        return False
    raw = blob.encode("ascii").replace(b"\r\n", b"\n")
    if raw.translate(None, _PLAIN_BYTES):
        return False
    return not any(bad in raw for bad in (b"/.", b"\n.", b"\n/", b"\n?"))


def _is_http(url: str) -> bool:
    return url[:8].lower().startswith(_HTTP)


def _is_relative_path(uri: str) -> bool:
    """A relative-path reference (RFC 3986 §4.2): no scheme, no authority, no leading slash."""
    if uri.startswith("/"):
        return False
    head = uri.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return ":" not in head


class _Rewriter:
    def __init__(self, base_url: str, keep_inside: str | None, make_ref: MakeRef) -> None:
        self.base_url = base_url
        self.keep_inside = keep_inside
        self.make_ref = make_ref
        self.variables: dict[str, str] = {}
        self.base_directory = directory_of(resolve(base_url, "./"))
        # Plain relative names under the playlist's own directory need no resolution at all
        # when that directory lies inside the kept one: the hot path for long playlists.
        self.fast_keep = keep_inside is not None and inside(keep_inside, self.base_directory)

    def every_line(self, text: str) -> str | None:
        """`text` with its URIs rewritten, or None when nothing changes."""
        lines = text.split("\n")
        changed = False
        plain = _PLAIN.fullmatch
        fast_keep = self.fast_keep
        for index, line in enumerate(lines):
            if not line:
                continue
            first = line[0]
            if first == "#":
                if "URI" in line or line.startswith(_SPECIAL):
                    new = self.tag(line, 0)
                    if new is not line:
                        lines[index] = new
                        changed = True
                continue
            if first in _WHITESPACE:
                stripped = line.lstrip()
                if not stripped:
                    continue
                if stripped[0] == "#":
                    new = self.tag(line, len(line) - len(stripped))
                    if new is not line:
                        lines[index] = new
                        changed = True
                    continue
            stripped = line.strip()
            if fast_keep and not stripped.startswith(_HTTP) and plain(stripped):
                continue
            new = self.uri(stripped)
            if new is not None:
                start = len(line) - len(line.lstrip())
                lines[index] = line[:start] + new + line[start + len(stripped) :]
                changed = True
        return "\n".join(lines) if changed else None

    def tag_lines(self, text: str) -> str | None:
        """Like `every_line`, for a text whose URI lines are known to stay as written.

        Only tag lines that may carry a URI are visited, found with `str.find`, so a long
        VOD playlist costs a few C-level scans instead of a Python step per line.
        """
        starts: set[int] = set()
        for needle in _URI_TAG_NEEDLES:
            at = text.find(needle)
            while at >= 0:
                start = text.rfind("\n", 0, at) + 1
                starts.add(start)
                end = text.find("\n", at)
                if end < 0:
                    break
                at = text.find(needle, end)
        pieces: list[str] = []
        last = 0
        for start in sorted(starts):
            end = text.find("\n", start)
            if end < 0:
                end = len(text)
            line = text[start:end]
            if not line.startswith("#"):
                continue
            new = self.tag(line, 0)
            if new is not line:
                pieces.append(text[last:start])
                pieces.append(new)
                last = end
        if not pieces:
            return None
        pieces.append(text[last:])
        return "".join(pieces)

    def tag(self, line: str, offset: int) -> str:
        """`line` with the URIs of its attributes rewritten; `line` itself when none changes."""
        colon = line.find(":", offset)
        if colon < 0:
            return line
        name = line[offset + 1 : colon]
        if name == "EXT-X-DEFINE":
            self.define(line, colon + 1)
            return line
        loose = False
        if name == "EXT-X-DATERANGE":
            wanted: Callable[[str], object] = _DATERANGE_URI.fullmatch
            loose = True
        elif name == "EXT-X-CONTENT-STEERING":
            wanted = "SERVER-URI".__eq__
        elif name in URI_TAGS or (name.startswith("EXT") and name not in _NOT_ATTRIBUTE_LISTS):
            wanted = "URI".__eq__
        else:
            return line
        pieces: list[str] = []
        last = 0
        for attribute, value, start, end in _attributes(line, colon + 1):
            if value is None or not wanted(attribute):
                continue
            # DATERANGE client attributes are free-form; only values that read as URLs count.
            if loose and (not value or any(ch.isspace() for ch in value)):
                continue
            new = self.uri(value)
            if new is None:
                continue
            pieces.append(line[last:start])
            pieces.append(new)
            last = end
        if not pieces:
            return line
        pieces.append(line[last:])
        return "".join(pieces)

    def define(self, line: str, start: int) -> None:
        found = {attribute: value for attribute, value, _, _ in _attributes(line, start)}
        name = found.get("NAME")
        value = found.get("VALUE")
        if name is not None and value is not None:
            self.variables[name] = value
            return
        param = found.get("QUERYPARAM")
        if param is not None:
            # The raw value, not a percent-decoded one: it goes back into a URL, and signed
            # tokens must reach the origin exactly as the origin wrote them.
            query = self.base_url.split("#", 1)[0].partition("?")[2]
            for pair in query.split("&"):
                key, _, raw = pair.partition("=")
                if key == param:
                    self.variables[param] = raw
                    break
        # IMPORT="x" comes from a master playlist this rewrite never sees: x stays unknown.

    def uri(self, written: str) -> str | None:
        """The text that replaces `written`, or None when it stays as written."""
        if not written:
            return None
        meant = self.substituted(written)
        if meant is None:
            return None  # imported from a master we have not seen: the player's job
        if meant.startswith(_HTTP) and "/." not in meant and "#" not in meant:
            # Already what `resolve` would give back, character for character, and never
            # kept as written (only relative paths are).
            return self.make_ref(meant)
        if _PLAIN.fullmatch(meant):
            if self.fast_keep:
                return None
            absolute = self.base_directory + meant
        else:
            absolute = resolve(self.base_url, meant)
            if not _is_http(absolute):
                return None  # skd:, data:, urn: and friends belong to the player
        if (
            self.keep_inside is not None
            and _is_relative_path(meant)
            and inside(self.keep_inside, absolute)
        ):
            return None
        return self.make_ref(absolute)

    def substituted(self, written: str) -> str | None:
        """`written` with its variables filled in; None while any is still unknown."""
        if "{$" not in written:
            return written
        variables = self.variables
        meant = _VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), written)
        return None if _VARIABLE.search(meant) else meant

    def absolute(self, written: str) -> str | None:
        """The http(s) URL a URI means, or None for URIs that are not fetched over HTTP."""
        meant = self.substituted(written)
        if meant is None:
            return None
        absolute = resolve(self.base_url, meant)
        return absolute if _is_http(absolute) else None


def _attributes(line: str, start: int) -> list[tuple[str, str | None, int, int]]:
    """(name, quoted value or None, value start, value end) for each attribute from `start`.

    Quoted strings may hold commas and `=`; an item that is not NAME=value is skipped up to
    the next comma outside quotes, so one malformed attribute cannot hide the ones after it.
    """
    found: list[tuple[str, str | None, int, int]] = []
    size = len(line)
    position = start
    while True:
        match = _ATTRIBUTE.match(line, position)
        if match:
            found.append((match.group(1), match.group(2), match.start(2), match.end(2)))
            position = match.end()
        else:
            junk = _JUNK.match(line, position)
            position = junk.end() if junk else size
        if position < size and line[position] == ",":
            position += 1
            continue
        return found
