"""Gateway URLs: `/p/<token>/<rest>`, where the token grants an upstream directory."""

from __future__ import annotations

import time

from gateway.errors import Forbidden, Gone
from gateway.signing import Grant, Headers, Signer, TokenError, TokenExpired
from playlists.urls import directory_of

PREFIX = "/p/"
AS_HLS_PREFIX = "/s/"
AS_HLS_MODE = "hls"


def split_upstream(url: str) -> tuple[str, str]:
    """Split an upstream URL into the directory to grant and the rest (file name and query).

    A DASH template identifier (`$Number$`) never lands in the directory, so that a player
    can still substitute it in the rest.
    """
    head = url.partition("?")[0]
    if "#" not in url and "$" not in head:
        # The common shape, split without parsing (a long playlist makes one per segment):
        # the directory ends at the last slash after the authority.
        slash = head.rfind("/")
        if slash > head.find("://") + 2 > 2:
            return head[: slash + 1], url[slash + 1 :]
    cut = url.find("$")
    directory = directory_of(url[:cut] if cut >= 0 else url)
    return directory, url[len(directory) :]


def open_token(signer: Signer, token: str, mode: str) -> Grant:
    """The grant a token carries, when it is genuine, unexpired and for this kind of route."""
    try:
        grant = signer.verify(token)
    except TokenExpired:
        raise Gone("this link has expired") from None
    except TokenError as exc:
        raise Forbidden(f"invalid link: {exc}") from None
    if grant.mode != mode:
        raise Forbidden("this link is for another route")
    return grant


class Links:
    """Mints gateway paths and URLs; one signer, one scheme."""

    def __init__(self, signer: Signer, public_base: str) -> None:
        self.signer = signer
        self.public_base = public_base.rstrip("/")

    def path(self, grant: Grant, rest: str) -> str:
        return f"{PREFIX}{self.signer.mint(grant)}/{rest}"

    def mint(self, upstream_url: str, headers: Headers = (), ttl: float | None = None) -> str:
        """The absolute gateway URL that plays `upstream_url` with `headers` sent upstream."""
        directory, rest = split_upstream(upstream_url)
        expires = int(time.time() + ttl) if ttl else None
        return self.public_base + self.path(Grant(directory, headers, expires), rest)

    def mint_as_hls(self, source_url: str, headers: Headers = (), ttl: float | None = None) -> str:
        """The gateway URL of an HLS playlist made from `source_url` (an MP4 file or an MPD)."""
        expires = int(time.time() + ttl) if ttl else None
        return self.public_base + self.as_hls_path(Grant(source_url, headers, expires))

    def as_hls_path(self, source: Grant) -> str:
        grant = Grant(source.directory, source.headers, source.expires, AS_HLS_MODE)
        return f"{AS_HLS_PREFIX}{self.signer.mint(grant)}/index.m3u8"

    def ref_maker(self, parent: Grant, playlist_rest: str, *, route: str = "") -> RefMaker:
        """References, relative to the playlist being served, for URLs outside its grant.

        Relative (`../../<token>/seg.ts`) rather than absolute, so that a rewritten playlist
        is correct behind any host name or path prefix and can be cached as is. `route` is
        what leads from the served playlist's route to `/p/` (`"../p/"` from `/watch/`).
        """
        climb = "../" * (playlist_rest.split("?", 1)[0].count("/") + 1) + route
        return RefMaker(self.signer, parent, climb)


class RefMaker:
    """`make_ref(url)` for one served playlist: one signature per upstream directory."""

    def __init__(self, signer: Signer, parent: Grant, climb: str) -> None:
        self._signer = signer
        self._parent = parent
        self._climb = climb
        self._prefixes: dict[str, str] = {}

    def __call__(self, url: str) -> str:
        directory, rest = split_upstream(url)
        return self.directory(directory) + rest

    def directory(self, directory: str) -> str:
        """The reference prefix of `directory`: `self(directory + name)` is this + name."""
        prefix = self._prefixes.get(directory)
        if prefix is None:
            token = self._signer.mint(self._parent.child(directory))
            prefix = self._prefixes[directory] = f"{self._climb}{token}/"
        return prefix
