"""Pure rewrite speed: a 10,000-segment playlist and a 5,000-entry-timeline MPD.

python -m bench.rewrite
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import m3u8

from bench.common import save
from gateway.heap import keep_freed_heap
from gateway.links import Links
from gateway.settings import Settings
from gateway.signing import Grant, Signer
from playlists import dash, hls

BASE = "https://cdn.example.com/vod/title/index.m3u8"


def timed(run: Callable[[], object], repeat: int = 20) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def workloads() -> dict[str, Callable[[], object]]:
    """Each rewrite the table times, by its key in the results."""
    body = (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        + "".join(f"#EXTINF:2.000,\nseg_{i:05d}.ts\n" for i in range(10_000))
        + "#EXT-X-ENDLIST\n"
    ).encode()
    ref = lambda url: "../T/" + url.rsplit("/", 1)[-1]  # noqa: E731
    links = Links(Signer(b"bench-secret-0123456789"), "http://gw.example")
    grant = Grant("https://cdn.example.com/vod/title/")

    def every_signed() -> bytes:
        # Relative names not kept (the playlist was redirected out of its grant), with the
        # gateway's own reference maker, as the gateway calls it.
        refs = links.ref_maker(grant, "index.m3u8")
        return hls.rewrite(
            body,
            base_url=BASE,
            keep_relative_inside=None,
            make_ref=refs,
            directory_ref=refs.directory,
        )

    # The usual CDN shape: absolute segment URLs, each becoming a signed gateway reference
    # (the gateway's own reference maker: one signature per directory).
    absolute_body = body.replace(b"\nseg_", b"\nhttps://cdn.example.com/vod/title/seg_")

    def absolute_signed() -> bytes:
        refs = links.ref_maker(grant, "index.m3u8")
        return hls.rewrite(
            absolute_body,
            base_url=BASE,
            keep_relative_inside=grant.directory,
            make_ref=refs,
            directory_ref=refs.directory,
        )

    timeline = "".join(f'<S t="{i * 180000}" d="180000"/>' for i in range(5000))
    mpd = (
        '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" '
        'minimumUpdatePeriod="PT2S"><BaseURL>https://cdn.example.com/live/</BaseURL><Period>'
        '<AdaptationSet><SegmentTemplate media="$Time$.m4s" initialization="init.mp4" '
        f'timescale="90000"><SegmentTimeline>{timeline}</SegmentTimeline></SegmentTemplate>'
        '<Representation id="v" bandwidth="1"/></AdaptationSet></Period></MPD>'
    ).encode()
    return {
        "hls_kept_ms": lambda: hls.rewrite(
            body,
            base_url=BASE,
            keep_relative_inside="https://cdn.example.com/vod/title/",
            make_ref=ref,
        ),
        "hls_every_ms": every_signed,
        "hls_per_line_ms": lambda: hls.rewrite(
            body, base_url=BASE, keep_relative_inside=None, make_ref=ref
        ),
        "hls_absolute_ms": absolute_signed,
        "mpd_ms": lambda: dash.rewrite_mpd(
            mpd,
            base_url="https://o.example/live/m.mpd",
            keep_relative_inside="https://o.example/live/",
            make_ref=ref,
            max_bytes=10**8,
        ),
        "m3u8_ms": lambda: m3u8.loads(body.decode(), uri=BASE).dumps(),
    }


LABELS = {
    "hls_kept_ms": "HLS 10k segments, relative URIs kept",
    "hls_every_ms": "HLS 10k segments, every URI rewritten, each signed",
    "hls_per_line_ms": "the same through a reference function called per line",
    "hls_absolute_ms": "HLS 10k absolute segment URLs, each signed",
    "mpd_ms": "MPD with a 5,000-entry SegmentTimeline",
    "m3u8_ms": "m3u8 package parse + dump of the kept playlist",
}


def main() -> None:
    """Every rewrite timed twice: with the C library's own heap policy, then with the one a
    gateway worker sets at start (`gateway.heap`, `GATEWAY_HEAP_KEEP_BYTES`), under which
    the gateway runs them. A rewrite's output is a new string of a megabyte or more, so the
    policy decides whether each one is written into pages already mapped or into fresh ones
    the kernel must fault in. The results (and the targets) are the worker's figures. The
    C library's pass runs first because a worker's policy cannot be undone in the process,
    so the pair is in one order only; bench/HISTORY.md has them in fresh processes,
    alternating."""
    runs = workloads()
    library = timed(runs.pop("m3u8_ms"), repeat=5)
    c_library = {key: timed(run) for key, run in runs.items()}
    keep_freed_heap(Settings().heap_keep_bytes)
    worker = {key: timed(run) for key, run in runs.items()}
    print("\n## Pure rewrite (median of runs, ms)\n")
    print("| workload | in a gateway worker | with the C library's heap policy |\n|---|---|---|")
    for key, label in LABELS.items():
        if key in worker:
            print(f"| {label} | {worker[key]:.2f} | {c_library[key]:.2f} |")
    kept = worker["hls_kept_ms"]
    print(f"| {LABELS['m3u8_ms']} | {library:.1f} ({library / kept:.0f}× the kept rewrite) | — |")
    results = {**worker, "m3u8_ms": library, "c_library_heap": c_library}
    print(f"results: {save('rewrite', results)}")


if __name__ == "__main__":
    main()
