"""DASH MPDs (ISO/IEC 23009-1): recognise, inspect, and rewrite every URL they carry.

The MPD is parsed (with entities, DTDs and network access off) only to prove it is a safe,
well-formed MPD; the rewrite itself edits the original text in place, so namespaces,
prefixes, attribute order, quoting, comments and whitespace come out byte-identical.

Rewritten: `BaseURL` at every level (each of several siblings), `SegmentTemplate@media`,
`@initialization`, `@index`, `@bitstreamSwitching` (`$…$` identifiers kept for the player),
`SegmentURL@media` / `@index`, `Initialization@sourceURL`, `RepresentationIndex@sourceURL`,
`BitstreamSwitching@sourceURL`, `Location`, `PatchLocation`, `ContentSteering`, and
`xlink:href` on remote elements.

Left as they are, on purpose: DRM license URLs in `ContentProtection` (license servers
authenticate the player, not the gateway), `UTCTiming` sources (a clock, not media), and
`EventStream` payloads (opaque to the gateway).

Relative references that stay inside the directory the MPD's gateway URL maps are kept as
written; a `BaseURL` that leaves it becomes a gateway reference for its own directory, under
which the relative templates below it keep working unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from playlists.errors import PlaylistError
from playlists.urls import directory_of, inside, resolve

DASH_NS = "urn:mpeg:dash:schema:mpd:2011"
XLINK_NS = "http://www.w3.org/1999/xlink"
_RESOLVE_TO_ZERO = "urn:mpeg:dash:resolve-to-zero:2013"

# Element local name -> attributes holding URL references.
_URL_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "SegmentTemplate": ("media", "initialization", "index", "bitstreamSwitching"),
    "SegmentURL": ("media", "index"),
    "Initialization": ("sourceURL",),
    "RepresentationIndex": ("sourceURL",),
    "BitstreamSwitching": ("sourceURL",),
}
_URL_TEXT_ELEMENTS = frozenset({"BaseURL", "Location", "PatchLocation", "ContentSteering"})
# Levels whose BaseURL children set the base for everything below them (§5.6.4).
_BASE_LEVELS = frozenset({"MPD", "Period", "AdaptationSet", "Representation", "SubRepresentation"})

_MARKUP = re.compile(
    r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<![^>]*>"
    r"|</\s*([^\s>]+)\s*>"
    r"|<([^\s/>!?]+)((?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(/?)>",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(r"([^\s=/>]+)(\s*=\s*)(?:\"([^\"]*)\"|'([^']*)')")
_HEAD = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(?:[A-Za-z_][\w.-]*:)?MPD[\s>/]",
    re.DOTALL,
)
_DURATION = re.compile(
    r"^P(?:(?P<y>[\d.]+)Y)?(?:(?P<mo>[\d.]+)M)?(?:(?P<d>[\d.]+)D)?"
    r"(?:T(?:(?P<h>[\d.]+)H)?(?:(?P<mi>[\d.]+)M)?(?:(?P<s>[\d.]+)S)?)?$"
)
_HTTP_PREFIXES = ("http://", "https://", "HTTP://", "HTTPS://")
# Gateway references are relative to the MPD's own URL; nested BaseURLs change the base the
# player resolves against, so references are re-expressed relative to each base in a model
# of the gateway's path space deep enough that no climb can leave it.
_MODEL_MPD = "http://gateway.invalid/" + "m/" * 64 + "manifest.mpd"

MakeRef = Callable[[str], str]


_DOCTYPE_HEAD = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<!DOCTYPE\s+(?:[\w.-]+:)?MPD\b",
    re.DOTALL,
)


def is_mpd(head: bytes) -> bool:
    """Whether a body (or its first bytes) starts like an MPD document.

    An MPD behind a DOCTYPE counts too, so that it is refused as hostile rather than passed
    through unparsed.
    """
    return bool(_HEAD.match(head[:4096]) or _DOCTYPE_HEAD.match(head[:4096]))


@dataclass(frozen=True, slots=True)
class MpdInfo:
    is_dynamic: bool
    minimum_update_period: float | None  # seconds


def inspect_mpd(body: bytes, max_bytes: int = 64 * 1024**2) -> MpdInfo:
    root = parse_document(body, max_bytes)
    period = root.get("minimumUpdatePeriod")
    return MpdInfo(
        is_dynamic=root.get("type", "static") == "dynamic",
        minimum_update_period=parse_duration(period) if period else None,
    )


def parse_duration(value: str) -> float | None:
    """An xs:duration in seconds (years and months taken as 365 and 30 days)."""
    match = _DURATION.match(value.strip())
    if not match or value.strip() in ("P", "PT"):
        return None
    scale = {"y": 365 * 86400, "mo": 30 * 86400, "d": 86400, "h": 3600, "mi": 60, "s": 1}
    try:
        return sum(float(match.group(k) or 0) * factor for k, factor in scale.items())
    except ValueError:
        return None


def rewrite_mpd(
    body: bytes,
    *,
    base_url: str,
    keep_relative_inside: str | None,
    make_ref: MakeRef,
    max_bytes: int,
) -> bytes:
    """Point every URL in the MPD back at the gateway; see the module docstring."""
    root = parse_document(body, max_bytes)
    xlink_prefixes = {prefix for prefix, ns in root.nsmap.items() if ns == XLINK_NS and prefix}
    text = body.decode("utf-8-sig")
    bom = "\ufeff" if body.startswith(b"\xef\xbb\xbf") else ""
    rewriter = _Rewriter(text, base_url, keep_relative_inside, make_ref, xlink_prefixes)
    out = rewriter.run()
    return (bom + out).encode("utf-8") if out is not text else body


def parse_document(body: bytes, max_bytes: int) -> etree._Element:
    """The MPD as an element tree, parsed safely: bounded, no DTD, no entities, no network."""
    if len(body) > max_bytes:
        raise PlaylistError(f"MPD larger than {max_bytes} bytes")
    head = body[:65536].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in body.upper():
        raise PlaylistError("MPD declares a DTD or entities, which are refused")
    # Recovery is on only so that an undeclared namespace prefix (seen in DRM blobs of real
    # MPDs, which browsers' parsers accept) is not fatal; any other error still is.
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
        recover=True,
    )
    try:
        root = etree.fromstring(body, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise PlaylistError(f"MPD is not well-formed XML: {reason}") from None
    fatal = [e for e in parser.error_log if e.domain != etree.ErrorDomains.NAMESPACE]
    if fatal or root is None:
        reason = f"{fatal[0].message[:120]} (line {fatal[0].line})" if fatal else "no root"
        raise PlaylistError(f"MPD is not well-formed XML: {reason}")
    try:
        name = etree.QName(root)
    except ValueError:
        # A recovered parse keeps an undeclared prefix in the tag ("x:MPD"), which QName refuses.
        raise PlaylistError(f"not an MPD (root element {str(root.tag)[:60]!r})") from None
    if name.localname != "MPD" or (name.namespace or DASH_NS).lower() != DASH_NS.lower():
        raise PlaylistError(f"not an MPD (root element {name.localname!r} in {name.namespace})")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise PlaylistError("MPD is not UTF-8") from None
    return root


@dataclass(slots=True)
class _Frame:
    local: str
    upstream_base: str  # absolute upstream URL relative references resolve against
    gateway_base: str  # the same base in the model of the gateway's path space
    kept: str | None  # upstream directory whose relative references may stay as written
    base_set: bool = False  # a BaseURL child already set this level's base
    # The base this level inherited: every BaseURL sibling resolves against it, not against
    # the first sibling.
    inherited: tuple[str, str, str | None] = ("", "", None)

    def __post_init__(self) -> None:
        self.inherited = (self.upstream_base, self.gateway_base, self.kept)


class _Rewriter:
    def __init__(
        self,
        text: str,
        base_url: str,
        keep: str | None,
        make_ref: MakeRef,
        xlink_prefixes: set[str],
    ) -> None:
        self.text = text
        self.make_ref = make_ref
        self.xlink_names = {f"{p}:href" for p in xlink_prefixes}
        self.edits: list[tuple[int, int, str]] = []
        self.root_frame = _Frame("#document", base_url, _MODEL_MPD, keep)
        self.insert_base = keep is None  # a redirected MPD gets one BaseURL for its new home

    def run(self) -> str:
        text = self.text
        stack = [self.root_frame]
        root_prefix = ""
        pending_text: tuple[int, _Frame, str] | None = None
        for match in _MARKUP.finditer(text):
            end_name, start_name = match.group(1), match.group(2)
            if end_name is not None:
                local = end_name.rsplit(":", 1)[-1]
                if pending_text is not None and pending_text[2] == local:
                    self.url_text(pending_text[0], match.start(), pending_text[1], local)
                    pending_text = None
                if len(stack) > 1:
                    stack.pop()
                continue
            if start_name is None:
                continue  # comment, CDATA, processing instruction
            local = start_name.rsplit(":", 1)[-1]
            parent = stack[-1]
            if len(stack) == 2 and self.insert_base and local not in ("ProgramInformation",):
                self.add_base(match.start(), stack[1], root_prefix)
            frame = _Frame(local, parent.upstream_base, parent.gateway_base, parent.kept)
            if local in _URL_ATTRIBUTES or self.xlink_names:
                self.url_attributes(match, local, frame)
            empty = match.group(4) == "/"
            if local == "MPD" and len(stack) == 1:
                root_prefix = start_name[: -len(local)]
            if local in _URL_TEXT_ELEMENTS and not empty:
                pending_text = (match.end(), parent, local)
            if not empty:
                stack.append(frame)
        if not self.edits:
            return text
        pieces: list[str] = []
        last = 0
        for start, end, replacement in sorted(self.edits, key=lambda e: (e[0], e[1])):
            pieces.append(text[last:start])
            pieces.append(replacement)
            last = end
        pieces.append(text[last:])
        return "".join(pieces)

    # -- BaseURL and other text-valued elements ---------------------------------------------
    def url_text(self, start: int, end: int, parent: _Frame, local: str) -> None:
        raw = self.text[start:end]
        written = _unescape(raw).strip()
        if local == "BaseURL":
            self.base_url(start, end, raw, written, parent)
            return
        if not written:
            return
        new = self.reference(written, parent)
        if new is not None:
            self.edits.append((start, end, _replace_inner(raw, _escape_text(new))))

    def base_url(self, start: int, end: int, raw: str, written: str, level: _Frame) -> None:
        upstream_base, gateway_base, level_kept = level.inherited
        absolute = resolve(upstream_base, written) if written else upstream_base
        if not absolute.startswith(_HTTP_PREFIXES):
            return
        keeps = (
            level_kept is not None and _is_relative_path(written) and inside(level_kept, absolute)
        )
        if keeps:
            gateway = resolve(gateway_base, written)
            kept = level_kept
        else:
            gateway = resolve(_MODEL_MPD, self.make_ref(absolute))
            ref = _relative(gateway_base, gateway)
            self.edits.append((start, end, _replace_inner(raw, _escape_text(ref))))
            kept = directory_of(absolute)
        if level.local in _BASE_LEVELS and not level.base_set:
            # The first BaseURL sets the base below; players may pick a sibling, and every
            # sibling was rewritten the same way, so relative references hold under each.
            level.base_set = True
            level.upstream_base = absolute
            level.gateway_base = gateway
            level.kept = kept

    def add_base(self, at: int, mpd: _Frame, prefix: str) -> None:
        self.insert_base = False
        if self._mpd_level_base(at):
            return
        directory = directory_of(mpd.upstream_base)
        gateway = resolve(_MODEL_MPD, self.make_ref(directory))
        ref = _relative(mpd.gateway_base, gateway)
        indent = _indent_before(self.text, at)
        element = f"<{prefix}BaseURL>{_escape_text(ref)}</{prefix}BaseURL>"
        self.edits.append((at, at, element + indent))
        mpd.upstream_base = directory
        mpd.gateway_base = gateway
        mpd.kept = directory
        mpd.base_set = True

    def _mpd_level_base(self, at: int) -> bool:
        """Whether the MPD element has a BaseURL child among its direct children."""
        depth = 0
        for match in _MARKUP.finditer(self.text, at):
            if match.group(1) is not None:
                if depth == 0:
                    return False
                depth -= 1
            elif match.group(2) is not None:
                if depth == 0 and match.group(2).rsplit(":", 1)[-1] == "BaseURL":
                    return True
                if match.group(4) != "/":
                    depth += 1
        return False

    # -- attributes ---------------------------------------------------------------------------
    def url_attributes(self, match: re.Match[str], local: str, frame: _Frame) -> None:
        wanted = _URL_ATTRIBUTES.get(local, ())
        attributes = match.group(3)
        if not attributes:
            return
        offset = match.start(3)
        for attr in _ATTRIBUTE.finditer(attributes):
            name = attr.group(1)
            if name not in wanted and name not in self.xlink_names:
                continue
            quote = '"' if attr.group(3) is not None else "'"
            group = 3 if quote == '"' else 4
            raw = attr.group(group)
            written = _unescape(raw)
            if not written or written == _RESOLVE_TO_ZERO:
                continue
            new = self.reference(written, frame)
            if new is not None:
                start = offset + attr.start(group)
                self.edits.append((start, start + len(raw), _escape_attribute(new, quote)))

    def reference(self, written: str, frame: _Frame) -> str | None:
        """The replacement for a URL reference, or None to keep it as written."""
        absolute = resolve(frame.upstream_base, written)
        if not absolute.startswith(_HTTP_PREFIXES):
            return None
        if frame.kept is not None and _is_relative_path(written) and inside(frame.kept, absolute):
            return None
        gateway = resolve(_MODEL_MPD, self.make_ref(absolute))
        return _relative(frame.gateway_base, gateway)


def _relative(base: str, target: str) -> str:
    """A relative-path reference from `base` to `target`, both in the gateway model."""
    if target.split("/", 3)[:3] != base.split("/", 3)[:3]:
        return target  # make_ref gave an absolute URL elsewhere: nothing to re-express
    base_dir = directory_of(base).split("/")[3:-1]
    target_path, sep, tail = target.partition("?")
    parts = target_path.split("/")[3:]
    common = 0
    while common < len(base_dir) and common < len(parts) - 1 and base_dir[common] == parts[common]:
        common += 1
    ref = "../" * (len(base_dir) - common) + "/".join(parts[common:])
    return (ref or "./") + (sep + tail if sep else "")


def _is_relative_path(uri: str) -> bool:
    if uri.startswith("/"):
        return False
    head = uri.split("/", 1)[0].split("?", 1)[0]
    return ":" not in head


def _replace_inner(raw: str, new: str) -> str:
    """Keep the whitespace around an element's text, replace the text."""
    stripped = raw.strip()
    if not stripped:
        return new
    start = raw.index(stripped)
    return raw[:start] + new + raw[start + len(stripped) :]


def _indent_before(text: str, at: int) -> str:
    line_start = text.rfind("\n", 0, at)
    indent = text[line_start:at] if line_start >= 0 else ""
    return indent if indent.strip() == "" else ""


_ENTITY = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _unescape(value: str) -> str:
    if "&" not in value:
        return value

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("#x"):
            return chr(int(name[2:], 16))
        if name.startswith("#"):
            return chr(int(name[1:]))
        return _NAMED[name]

    return _ENTITY.sub(one, value)


def _escape_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;")


def _escape_attribute(value: str, quote: str) -> str:
    value = value.replace("&", "&amp;").replace("<", "&lt;")
    return value.replace('"', "&quot;") if quote == '"' else value.replace("'", "&apos;")
