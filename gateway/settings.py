"""The gateway's configuration: one object, read from `GATEWAY_*` environment variables."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.http_client import proxy_url

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_byte_size(value: object) -> int:
    """`10GiB`, `512MB`, `1048576` → bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10GiB")
    if isinstance(value, int | float):
        return int(value)
    match = _SIZE_RE.match(str(value))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size (examples: 1048576, 512MiB, 10GiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


ByteSize = Annotated[int, BeforeValidator(parse_byte_size)]
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hls-gateway"


class Settings(BaseSettings):
    """Every knob of the gateway. Passed explicitly; never read from a global."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = None
    # Also listen on this unix socket, for an nginx on the same host: a request costs both
    # sides less there than over loopback TCP (bench/accel.py). The file is made
    # world-writable: who may connect is decided by its directory's permissions.
    unix_socket: Path | None = None
    workers: int = Field(default=1, ge=1, le=256)

    cache_dir: Path = Field(default_factory=default_cache_dir)
    cache_max_bytes: ByteSize = 10 * 1024**3
    cache_max_object_bytes: ByteSize = 512 * 1024**2
    # RAM tier for popular objects (admitted on their second hit); 0 turns it off.
    cache_memory_bytes: ByteSize = 256 * 1024**2
    # Disk hits are written from read-only maps of the cache files (page cache, no read copy);
    # this many stay mapped per worker (0: a map per hit).
    cache_mapped_files: int = Field(default=1024, ge=0)
    redis_url: str | None = None
    redis_prefix: str = "hlsgw"
    # Each node keeps its own disk and its own byte budget in the shared Redis index.
    node_name: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Behind nginx: answer cache hits with `X-Accel-Redirect: <prefix><path in cache dir>`
    # so nginx sends the file itself (see nginx/). Unset: the gateway sends hits.
    accel_redirect_prefix: str | None = None
    # Query parameters that identify a viewer rather than an object (per-viewer CDN tokens);
    # dropping them from the cache key keeps the hit ratio. JSON: {"host or *": ["param", ...]}.
    cache_key_ignore_params: dict[str, list[str]] = Field(default_factory=dict)

    secret: str | None = None
    secret_previous: CsvList = Field(default_factory=list)
    api_key: str | None = None
    # Enables /admin/cache (stats, purge, warm) for `Authorization: Bearer <token>`.
    admin_token: str | None = None
    # The page at / that mints a link and plays it with the bundled hls.js / dash.js.
    web_page: bool = True
    allow_private_upstreams: bool = False
    cors_origins: CsvList = Field(default_factory=lambda: ["*"])

    upstream_connect_timeout: float = Field(default=5.0, gt=0)
    upstream_read_timeout: float = Field(default=20.0, gt=0)
    upstream_max_redirects: int = Field(default=10, ge=0, le=30)
    upstream_connections_per_host: int = Field(default=32, ge=1)
    # Seconds a whole upstream body may take, however steadily it trickles (1 byte/s would
    # otherwise hold a fill forever).
    upstream_body_timeout: float = Field(default=300.0, gt=0)
    # Host patterns (`cdn.example.com`, `*.akamaized.net`); deny wins, empty allow = any.
    upstream_allow: CsvList = Field(default_factory=list)
    upstream_deny: CsvList = Field(default_factory=list)
    max_client_requests: int = Field(default=10_000, ge=1)
    playlist_max_bytes: ByteSize = 16 * 1024**2
    playlist_vod_ttl: float = Field(default=300.0, ge=0)
    playlist_cache_entries: int = Field(default=2048, ge=1)

    # Segments fetched into the cache ahead of the players (0 turns prefetch off).
    prefetch_segments: int = Field(default=2, ge=0, le=16)
    prefetch_per_host: int = Field(default=2, ge=1)
    prefetch_idle_seconds: float = Field(default=60.0, gt=0)

    # Serving MP4 files as HLS: segments start on keyframes near this length.
    segment_seconds: float = Field(default=4.0, ge=1.0, le=30.0)
    # Parsed MP4 indexes kept per worker (about 6 MB each for an hour of 25 fps video + AAC).
    segment_index_entries: int = Field(default=16, ge=1)
    # An MP4 origin without Range support is fetched whole into the cache up to this size.
    segment_whole_file_max_bytes: ByteSize = 1024**3
    # Page resolution with yt-dlp (the /resolve and /watch endpoints).
    resolve_format: str = "bv*+ba/b"
    resolve_ttl: float = Field(default=1800.0, gt=0)
    resolve_timeout: float = Field(default=60.0, gt=0)
    resolve_concurrency: int = Field(default=4, ge=1, le=64)
    # A Netscape cookies file for sites that need a login, and yt-dlp extractor arguments
    # as JSON: {"youtube": {"player_client": ["web"]}}.
    resolve_cookies_file: Path | None = None
    resolve_extractor_args: dict[str, dict[str, list[str]]] = Field(default_factory=dict)
    # One egress for extraction and the fetches that follow it (extracted URLs are often
    # bound to the IP that resolved them): an http://, https:// or socks5:// proxy URL.
    egress_proxy: str | None = None

    # Freed C heap kept mapped for reuse (gateway/heap.py): long playlists' rewritten text
    # and RAM-tier copies then reuse pages instead of faulting in new ones. 0 leaves the C
    # library's own policy.
    heap_keep_bytes: ByteSize = 64 * 1024**2
    # Once a worker serves, the objects start-up made are left out of the garbage
    # collector's full passes, which otherwise stall the worker for tens of milliseconds
    # (gateway/collector.py).
    gc_freeze: bool = True
    # auto: uvloop when installed (faster for hits and playlists), else asyncio's own loop.
    event_loop: str = Field(default="auto", pattern=r"^(auto|uvloop|asyncio)$")

    log_level: str = "INFO"
    # off | text | json (one JSON object per request, for log pipelines)
    access_log: str = Field(default="text", pattern=r"^(off|text|json)$")

    @field_validator("public_url")
    @classmethod
    def _public_url_is_http(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^https?://[^/]+", value):
            raise ValueError("must be an http(s) URL such as https://gw.example.com")
        return value.rstrip("/")

    @field_validator("egress_proxy")
    @classmethod
    def _proxy_the_client_speaks(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        proxy_url(value)  # the upstream client's own check: one list of what it speaks
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_not_empty(cls, value: list[str]) -> list[str]:
        return value or ["*"]

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @property
    def base_url(self) -> str:
        """The gateway's externally visible origin, used when minting absolute URLs."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class SettingsError(Exception):
    """Invalid configuration, reported as one line."""


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise SettingsError with a one-line reason."""
    try:
        clean = {key: value for key, value in overrides.items() if value is not None}
        return Settings(**clean)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise SettingsError(f"invalid setting GATEWAY_{field.upper()}: {first['msg']}") from None
