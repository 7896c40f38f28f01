"""`hls-gateway serve | url | resolve`: the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from gateway.settings import Settings, SettingsError, load_settings
from gateway.signing import HeaderError, parse_header_line

log = logging.getLogger("gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hls-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)

    url = commands.add_parser("url", help="print the signed gateway URL for an upstream URL")
    url.add_argument("upstream_url")
    url.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="a header to send upstream (Referer, Origin, User-Agent, Cookie, ...); repeatable",
    )
    url.add_argument("--ttl", type=float, help="seconds until the link expires")
    url.add_argument(
        "--as-hls",
        action="store_true",
        help="serve an MP4 file or a static MPD as HLS (segmented by the gateway)",
    )

    cache = commands.add_parser("cache", help="inspect, purge or warm the segment cache")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    cache_commands.add_parser("stats", help="entries and bytes of this node's cache")
    purge = cache_commands.add_parser("purge", help="remove cached objects")
    purge.add_argument("--upstream-prefix", help="only objects whose upstream URL starts so")
    warm = cache_commands.add_parser("warm", help="fetch every segment of a VOD playlist")
    warm.add_argument("playlist_url")
    warm.add_argument("--header", action="append", default=[], metavar="'Name: value'")

    resolve = commands.add_parser(
        "resolve", help="extract a web page's stream with yt-dlp and print its stable play URL"
    )
    resolve.add_argument("page_url")
    resolve.add_argument("--format", help="a yt-dlp format spec (default: GATEWAY_RESOLVE_FORMAT)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            settings = load_settings(host=args.host, port=args.port, workers=args.workers)
            _configure_logging(settings)
            return serve(settings)
        settings = load_settings()
        _configure_logging(settings)
        if args.command == "resolve":
            return print_watch_url(settings, args.page_url, args.format)
        if args.command == "cache":
            return cache_command(settings, args)
        return print_url(settings, args.upstream_url, args.header, args.ttl, args.as_hls)
    except (SettingsError, HeaderError, ValueError) as exc:
        print(f"hls-gateway: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hls-gateway: {exc.strerror or exc}", file=sys.stderr)
        return 1


def print_url(
    settings: Settings,
    upstream: str,
    header_lines: list[str],
    ttl: float | None,
    as_hls: bool = False,
) -> int:
    from gateway.app import build_links
    from playlists.urls import is_http_url

    if not is_http_url(upstream):
        raise ValueError(f"not an http(s) URL: {upstream}")
    if ttl is not None and ttl <= 0:
        raise ValueError("--ttl must be positive")
    headers = tuple(parse_header_line(line) for line in header_lines)
    links = build_links(settings)
    mint = links.mint_as_hls if as_hls else links.mint
    print(mint(upstream, headers, ttl))
    return 0


def cache_command(settings: Settings, args: argparse.Namespace) -> int:
    """Runs against the configured cache dir and index (the shared Redis one when set)."""
    import asyncio
    import json
    from dataclasses import asdict

    from gateway import admin
    from gateway.cache.segments import SegmentCache
    from gateway.errors import GatewayError
    from gateway.fetcher import Fetcher
    from gateway.upstream import UpstreamClient
    from playlists.urls import is_http_url

    async def run() -> int:
        cache = SegmentCache(settings)
        await cache.start()
        try:
            if args.cache_command == "stats":
                print(json.dumps(asdict(await admin.cache_stats(cache, settings.node_name))))
            elif args.cache_command == "purge":
                removed, size = await admin.purge(cache, args.upstream_prefix)
                print(f"removed {removed} objects, {size} bytes")
            else:
                if not is_http_url(args.playlist_url):
                    raise ValueError(f"not an http(s) URL: {args.playlist_url}")
                headers = tuple(parse_header_line(line) for line in args.header)
                client = UpstreamClient(settings)
                await client.start()
                try:
                    report = await admin.warm(
                        Fetcher(settings, client, cache),
                        cache,
                        args.playlist_url,
                        headers,
                        progress=_progress_bar,
                    )
                finally:
                    await client.close()
                print(file=sys.stderr)
                print(
                    f"{report.playlists} playlists, {report.segments} segments: "
                    f"{report.fetched} fetched ({report.bytes} bytes), "
                    f"{report.already_cached} already cached, {report.failed} failed"
                )
                return 1 if report.failed else 0
        except GatewayError as exc:
            print(f"hls-gateway: {exc.reason}", file=sys.stderr)
            return 1
        finally:
            await cache.close()
        return 0

    return asyncio.run(run())


def _progress_bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    bar = "#" * filled + "-" * (width - filled)
    print(f"\rwarming [{bar}] {done}/{total}", end="", file=sys.stderr, flush=True)


def print_watch_url(settings: Settings, page_url: str, spec: str | None) -> int:
    """Extract once here, so a page without a stream fails now rather than on the TV."""
    import asyncio

    from gateway.app import build_links
    from gateway.errors import GatewayError
    from gateway.resolver import Resolver, check_page_url
    from gateway.watch import watch_path

    async def extract() -> str:
        spec_used = spec or settings.resolve_format
        extraction = await Resolver(settings).resolve(check_page_url(page_url), spec_used)
        links = build_links(settings)
        return links.public_base + watch_path(links, page_url, spec_used, extraction)

    try:
        print(asyncio.run(extract()))
    except GatewayError as exc:
        print(f"hls-gateway: {exc.reason}", file=sys.stderr)
        return 1
    return 0


def serve(settings: Settings) -> int:
    if settings.workers > 1 and not settings.redis_url:
        raise SettingsError(
            "--workers > 1 needs GATEWAY_REDIS_URL: the embedded index lives in one process"
        )
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    from gateway.secret import load_secrets

    load_secrets(settings)  # create the secret once, before workers race for it
    # Bound before any worker starts: a port or path that is taken is one clear error.
    socks = [_shared_socket(settings)]
    if settings.unix_socket is not None:
        socks.append(_unix_socket(settings.unix_socket))
    if settings.workers == 1:
        log.info("serving on %s", settings.base_url)
        _run_worker(settings, socks)
        return 0
    _prepare_shared_metrics(settings)
    workers = [
        multiprocessing.get_context("fork").Process(target=_run_worker, args=(settings, socks))
        for _ in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    log.info("serving on %s with %d workers", settings.base_url, settings.workers)

    def _stop(_signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid:
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for worker in workers:
        worker.join()
    return 0


def _shared_socket(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _unix_socket(path: Path) -> socket.socket:
    """A listening unix socket at `path`, replacing a socket file a previous run left."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.stat().st_mode):
            raise SettingsError(f"GATEWAY_UNIX_SOCKET: {path} exists and is not a socket")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        problem = f"cannot listen on {path}: {exc.strerror}"
        raise SettingsError(f"GATEWAY_UNIX_SOCKET: {problem}") from None
    path.chmod(0o666)
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _run_worker(settings: Settings, socks: list[socket.socket]) -> None:
    """One worker process, serving on the listening sockets it shares with the others."""
    from gateway.access_log import access_logging
    from gateway.app import create_app
    from gateway.event_loop import new_event_loop
    from gateway.heap import keep_freed_heap

    keep_freed_heap(settings.heap_keep_bytes)
    loop = new_event_loop(settings.event_loop)
    asyncio.set_event_loop(loop)
    app = create_app(settings)
    main = loop.create_task(_serve(app, socks, access_logging(settings.access_log)))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        # Cancelling the server task runs its cleanup: in-flight requests get the
        # runner's grace period, then the app's shutdown hooks run.
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _serve(
    app: web.Application,
    socks: list[socket.socket],
    runner_options: dict[str, object],
) -> None:
    """Serve `app` until a signal ends the process (SIGTERM/SIGINT raise GracefulExit)."""
    from gateway.app import GATEWAY
    from gateway.collector import PauseTimer, freeze_startup_objects
    from gateway.lane_connection import GatewayRunner

    runner = GatewayRunner(app, handle_signals=True, **runner_options)  # type: ignore[arg-type]
    await runner.setup()
    gateway = app[GATEWAY]
    pauses = PauseTimer(gateway.metrics.gc_paused)
    try:
        if gateway.settings.gc_freeze:
            # Started, not yet accepting: no client waits for this one full collection.
            gateway.metrics.gc_frozen_objects.set(freeze_startup_objects())
        pauses.install()
        for sock in socks:
            await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()
    finally:
        pauses.remove()
        await runner.cleanup()


def _prepare_shared_metrics(settings: Settings) -> None:
    """Workers write their metrics to files here, so any worker's /metrics sums them all.

    Must happen before prometheus_client is imported, which is why the app is imported
    inside the workers.
    """
    directory = settings.cache_dir / "metrics"
    if directory.exists():
        shutil.rmtree(directory)  # a previous run's counters would be summed in
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if settings.access_log == "json":
        # JSON lines must stand alone: no timestamp prefix from the root format.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("gateway.access")
        access.addHandler(handler)
        access.propagate = False


if __name__ == "__main__":
    sys.exit(main())
