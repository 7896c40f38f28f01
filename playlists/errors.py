"""Errors raised by the pure manifest code; the gateway maps them to HTTP statuses."""

from __future__ import annotations


class PlaylistError(ValueError):
    """A manifest that cannot be read or rewritten safely."""


class PathEscapeError(ValueError):
    """A path that would leave the directory it was granted."""
