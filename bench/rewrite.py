"""Pure rewrite speed: a 10,000-segment playlist and a 5,000-entry-timeline MPD.

python -m bench.rewrite
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import m3u8

from bench.common import save
from gateway.links import Links
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


def main() -> None:
    body = (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        + "".join(f"#EXTINF:2.000,\nseg_{i:05d}.ts\n" for i in range(10_000))
        + "#EXT-X-ENDLIST\n"
    ).encode()
    text = body.decode()
    ref = lambda url: "../T/" + url.rsplit("/", 1)[-1]  # noqa: E731
    kept = timed(
        lambda: hls.rewrite(
            body,
            base_url=BASE,
            keep_relative_inside="https://cdn.example.com/vod/title/",
            make_ref=ref,
        )
    )
    per_line = timed(
        lambda: hls.rewrite(body, base_url=BASE, keep_relative_inside=None, make_ref=ref)
    )
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

    every = timed(every_signed)
    # The usual CDN shape: absolute segment URLs, each becoming a signed gateway reference
    # (the gateway's own reference maker: one signature per directory).
    absolute_body = body.replace(b"\nseg_", b"\nhttps://cdn.example.com/vod/title/seg_")

    def signed() -> bytes:
        refs = links.ref_maker(grant, "index.m3u8")
        return hls.rewrite(
            absolute_body,
            base_url=BASE,
            keep_relative_inside=grant.directory,
            make_ref=refs,
            directory_ref=refs.directory,
        )

    absolute = timed(signed)
    library = timed(lambda: m3u8.loads(text, uri=BASE).dumps(), repeat=5)
    timeline = "".join(f'<S t="{i * 180000}" d="180000"/>' for i in range(5000))
    mpd = (
        '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" '
        'minimumUpdatePeriod="PT2S"><BaseURL>https://cdn.example.com/live/</BaseURL><Period>'
        '<AdaptationSet><SegmentTemplate media="$Time$.m4s" initialization="init.mp4" '
        f'timescale="90000"><SegmentTimeline>{timeline}</SegmentTimeline></SegmentTemplate>'
        '<Representation id="v" bandwidth="1"/></AdaptationSet></Period></MPD>'
    ).encode()
    mpd_ms = timed(
        lambda: dash.rewrite_mpd(
            mpd,
            base_url="https://o.example/live/m.mpd",
            keep_relative_inside="https://o.example/live/",
            make_ref=ref,
            max_bytes=10**8,
        )
    )
    print("\n## Pure rewrite (median of runs)\n")
    print("| workload | ms |\n|---|---|")
    print(f"| HLS 10k segments, relative URIs kept | {kept:.2f} |")
    print(f"| HLS 10k segments, every URI rewritten, each signed | {every:.2f} |")
    print(f"| the same through a reference function called per line | {per_line:.2f} |")
    print(f"| HLS 10k absolute segment URLs, each signed | {absolute:.2f} |")
    print(
        f"| m3u8 package parse + dump of the same playlist | {library:.1f} ({library / kept:.0f}× the kept rewrite) |"
    )
    print(f"| MPD with a 5,000-entry SegmentTimeline | {mpd_ms:.2f} |")
    print(
        f"results: {save('rewrite', {'hls_kept_ms': kept, 'hls_every_ms': every, 'hls_per_line_ms': per_line, 'hls_absolute_ms': absolute, 'm3u8_ms': library, 'mpd_ms': mpd_ms})}"
    )


if __name__ == "__main__":
    main()
