"""Gateway URLs: `/p/<token>/<rest>`, where the token grants an upstream directory."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.signing import Grant, Headers, Signer
from playlists.urls import directory_of

PREFIX = "/p/"


def split_upstream(url: str) -> tuple[str, str]:
    """Split an upstream URL into the directory to grant and the rest (file name and query).

    A DASH template identifier (`$Number$`) never lands in the directory, so that a player
    can still substitute it in the rest.
    """
    cut = url.find("$")
    directory = directory_of(url[:cut] if cut >= 0 else url)
    return directory, url[len(directory) :]


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

    def ref_maker(
        self, parent: Grant, playlist_rest: str, *, route: str = ""
    ) -> Callable[[str], str]:
        """References, relative to the playlist being served, for URLs outside its grant.

        Relative (`../../<token>/seg.ts`) rather than absolute, so that a rewritten playlist
        is correct behind any host name or path prefix and can be cached as is. `route` is
        what leads from the served playlist's route to `/p/` (`"../p/"` from `/watch/`).
        """
        climb = "../" * (playlist_rest.split("?", 1)[0].count("/") + 1) + route
        tokens: dict[str, str] = {}

        def make_ref(url: str) -> str:
            directory, rest = split_upstream(url)
            token = tokens.get(directory)
            if token is None:
                token = tokens[directory] = self.signer.mint(parent.child(directory))
            return f"{climb}{token}/{rest}"

        return make_ref
