"""The one error type of the remuxing core."""

from __future__ import annotations


class RemuxError(ValueError):
    """A file the core cannot index or remux; `str(exc)` is a one-line, human reason."""
