"""What a request can fail with; every error's text is one line."""

from __future__ import annotations


class HttpError(Exception):
    """Any failure of a request."""


class ConnectError(HttpError):
    """No connection: refused, unresolvable, or the TLS handshake failed."""


class ConnectTimeout(HttpError):
    """The connection took longer than `ClientOptions.connect_timeout`."""


class ReadTimeout(HttpError):
    """Nothing arrived for `ClientOptions.read_timeout` while the head or body was awaited."""


class ResponseError(HttpError):
    """A malformed answer, or its body cut short."""


class StaleConnection(Exception):
    """A pooled connection was closed by the server before it answered: ask on a new one."""
