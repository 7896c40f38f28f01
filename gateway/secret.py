"""The signing secret: configured, or generated once and kept beside the cache."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from gateway.settings import Settings

log = logging.getLogger("gateway")

SECRET_FILE = "secret"


def load_secrets(settings: Settings) -> tuple[bytes, list[bytes]]:
    """The current secret and the previous ones still accepted for verification."""
    previous = [item.encode() for item in settings.secret_previous]
    if settings.secret:
        return settings.secret.encode(), previous
    return _generated(settings.cache_dir / SECRET_FILE), previous


def _generated(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when several workers start at once, exactly one creates the secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_when_written(path)
    value = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as handle:
        handle.write(value)
    log.warning(
        "GATEWAY_SECRET is not set: generated one in %s; set it to keep links valid across "
        "machines",
        path,
    )
    return value


def _read_when_written(path: Path) -> bytes:
    for _ in range(100):
        value = path.read_bytes().strip()
        if value:
            return value
        import time

        time.sleep(0.01)
    raise RuntimeError(f"secret file {path} is empty")
