"""URL arithmetic that never re-encodes: RFC 3986 §5.2 resolution on the raw text.

Signed CDN URLs break when a library normalises `%2F` or `%3D`, so every function here
works on the exact characters it was given and only touches dot segments.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from playlists.errors import PathEscapeError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_HTTP = re.compile(r"^https?://[^/?#\s]+", re.IGNORECASE)


def _split(url: str) -> tuple[str | None, str | None, str, str | None, str | None]:
    """(scheme, authority, path, query, fragment), each None when absent (RFC 3986 appendix B)."""
    fragment = query = scheme = authority = None
    if "#" in url:
        url, fragment = url.split("#", 1)
    if "?" in url:
        url, query = url.split("?", 1)
    match = _SCHEME.match(url)
    if match:
        scheme = match.group(1)
        url = url[match.end() :]
    if url.startswith("//"):
        end = url.find("/", 2)
        authority, url = (url[2:], "") if end < 0 else (url[2:end], url[end:])
    return scheme, authority, url, query, fragment


def _join(
    scheme: str | None, authority: str | None, path: str, query: str | None, fragment: str | None
) -> str:
    out = f"{scheme}:" if scheme is not None else ""
    if authority is not None:
        out += "//" + authority
    out += path
    if query is not None:
        out += "?" + query
    if fragment is not None:
        out += "#" + fragment
    return out


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, on the raw path."""
    # A dot segment is a whole "." or ".." segment: none can exist without one of these.
    if "/." not in path and not path.startswith("."):
        return path
    output: list[str] = []
    segments = path.split("/")
    absolute = path.startswith("/")
    if absolute:
        segments = segments[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    joined = "/".join(output)
    return "/" + joined if absolute else joined


def resolve(base: str, reference: str) -> str:
    """The absolute URL `reference` means when found in a document at `base`."""
    r_scheme, r_auth, r_path, r_query, r_frag = _split(reference)
    if r_scheme is not None:
        return _join(r_scheme, r_auth, remove_dot_segments(r_path), r_query, r_frag)
    b_scheme, b_auth, b_path, b_query, _ = _split(base)
    if r_auth is not None:
        return _join(b_scheme, r_auth, remove_dot_segments(r_path), r_query, r_frag)
    if not r_path:
        return _join(b_scheme, b_auth, b_path, r_query if r_query is not None else b_query, r_frag)
    if r_path.startswith("/"):
        return _join(b_scheme, b_auth, remove_dot_segments(r_path), r_query, r_frag)
    if b_auth is not None and not b_path:
        merged = "/" + r_path
    else:
        merged = b_path[: b_path.rfind("/") + 1] + r_path
    return _join(b_scheme, b_auth, remove_dot_segments(merged), r_query, r_frag)


def directory_of(url: str) -> str:
    """The URL up to and including the last `/` of its path (query and fragment dropped)."""
    scheme, authority, path, _, _ = _split(url)
    if authority is not None and not path:
        path = "/"
    return _join(scheme, authority, path[: path.rfind("/") + 1], None, None)


def inside(directory: str, url: str) -> bool:
    """Whether `url` lies in `directory` (as given by `directory_of`) with no dot segments."""
    if not url.startswith(directory):
        return False
    rest = url[len(directory) :].split("?", 1)[0].split("#", 1)[0]
    try:
        normalize_rest(rest)
    except PathEscapeError:
        return False
    return True


def is_http_url(url: str) -> bool:
    return bool(_HTTP.match(url)) and not any(ch.isspace() for ch in url)


def _decoded_fully(text: str) -> str:
    """Percent-decoding repeated until stable, so double encoding hides nothing."""
    for _ in range(4):
        decoded = unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    return text


def normalize_rest(rest: str) -> str:
    """Check a request path below a granted directory and resolve its dot segments.

    Literal `.` and `..` segments are resolved as a browser would, as long as the result
    stays inside the directory. Anything that would only become a dot segment or a root once
    some layer decodes it (`%2e%2e`, `..%2f`, `..%5c`, double encoding, NUL, a backslash
    segment) is refused outright: no legitimate player sends those. Plain encoded slashes
    stay as they are, since signed CDN paths carry them.
    """
    path = rest.split("?", 1)[0]
    if path.startswith(("/", "\\")):
        raise PathEscapeError("absolute path")
    if not ("%" in path or "\\" in path or "\x00" in path or "/." in path or path[:1] == "."):
        return path  # nothing to decode and no dot segment: the common case, checked fast
    decoded = _decoded_fully(path)
    if "\x00" in decoded:
        raise PathEscapeError("NUL in path")
    if decoded.startswith(("/", "\\")):
        raise PathEscapeError("absolute path")
    literal = path.split("/")
    for segment in re.split(r"[/\\]", decoded):
        if segment in (".", "..") and segment not in literal:
            raise PathEscapeError("encoded dot segment in path")
    if "\\" in decoded and any(s in (".", "..") for s in re.split(r"[/\\]", decoded)):
        raise PathEscapeError("backslash dot segment in path")
    depth = 0
    for segment in literal[:-1]:
        depth += -1 if segment == ".." else 0 if segment == "." else 1
        if depth < 0:
            raise PathEscapeError("path climbs out of its directory")
    if literal[-1] == ".." and depth - 1 < 0:
        raise PathEscapeError("path climbs out of its directory")
    return remove_dot_segments("/" + path)[1:]
