"""A static DASH MPD served as HLS: the same segments, listed in HLS playlists (no remuxing).

DASH on-demand and live-profile content is fMP4 (or MPEG-TS) cut into segments that HLS can
list as they are, so a device that plays only HLS can play it with the origin's own bytes:

- every video Representation becomes a variant (`EXT-X-STREAM-INF`); every audio
  AdaptationSet becomes one rendition of the group `"audio"` (`EXT-X-MEDIA`), using its
  highest-bandwidth Representation, since an HLS rendition has a single media playlist. An
  MPD without video offers each audio Representation as a variant instead.
- `@bandwidth` is the only rate an MPD states, so it goes into BANDWIDTH (plus the audio
  group's) and AVERAGE-BANDWIDTH is left out rather than guessed.
- Left out, on purpose: text and image AdaptationSets (subtitles, thumbnails); layered
  Representations (`@dependencyId`), which need their base layer in the same buffer. An
  AdaptationSet HLS cannot carry (WebM, encrypted) is left out too, as long as another one
  of its kind (video or audio) remains; otherwise the conversion fails with its reason.
- Several Periods (VOD) play one after the other, with EXT-X-DISCONTINUITY between them.
  The first Period decides the renditions; in each later Period a rendition continues in
  the AdaptationSet of the same kind with the same `@id`, else the one at the same position,
  and there in the Representation with the same `@id`, else the one of the same bandwidth
  rank.
- Addressing: SegmentTemplate with `@duration` or a SegmentTimeline (`$Number$`, `$Time$`,
  `r="-1"`), SegmentList (`@media` or `@mediaRange` byte ranges), and SegmentBase, whose
  segments come from the `sidx` in its `@indexRange` (fetched by the caller: see
  `sidx_byte_range`). Segments are clipped to their Period, as DASH players present them.

Dynamic (live) MPDs are refused: their segment lists move, which a VOD playlist cannot.
URLs are resolved as `playlists.dash` reads them: BaseURL by BaseURL, MPD → Period →
AdaptationSet → Representation, the first of several siblings, from the MPD's final URL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from lxml import etree

from playlists import dash
from playlists.errors import PlaylistError
from playlists.sidx import sidx_references
from playlists.urls import is_http_url, resolve

__all__ = [
    "DashToHlsError",
    "HlsPresentation",
    "HlsRendition",
    "master_playlist",
    "media_playlist",
    "read_mpd",
    "sidx_byte_range",
]

MAX_MPD_BYTES = 64 * 1024**2
# More segments than a week of 2 s segments is a hostile or broken MPD, not a film; the cap
# keeps one request from making a playlist of unbounded size.
MAX_SEGMENTS = 300_000

Kind = Literal["video", "audio"]


class DashToHlsError(PlaylistError):
    """An MPD that cannot be served as HLS; the message is the one-line reason."""


@dataclass(frozen=True, slots=True)
class Resource:
    url: str  # absolute
    byte_range: tuple[int, int] | None = None  # first and last byte, inclusive


@dataclass(frozen=True, slots=True)
class MediaSegment:
    resource: Resource
    duration: Fraction  # seconds


@dataclass(frozen=True, slots=True)
class Timeline:
    """SegmentTemplate segments, expanded only when a playlist is written."""

    media: str  # SegmentTemplate@media, identifiers not yet substituted
    base: str
    representation_id: str
    bandwidth: int
    timescale: int
    presentation_time_offset: int
    start_number: int
    runs: tuple[tuple[int, int, int], ...]  # (start time, duration, count) in timescale ticks
    end: Fraction | None  # the Period's duration: nothing plays after it

    def segments(self) -> Iterator[MediaSegment]:
        number = self.start_number
        for start, duration, count in self.runs:
            for index in range(count):
                time = start + index * duration
                clipped = _clip(
                    Fraction(time - self.presentation_time_offset, self.timescale),
                    Fraction(duration, self.timescale),
                    self.end,
                )
                if clipped is None:
                    return
                values = {
                    "RepresentationID": self.representation_id,
                    "Number": number,
                    "Time": time,
                    "Bandwidth": self.bandwidth,
                }
                url = _http(resolve(self.base, _expand(self.media, values)))
                yield MediaSegment(Resource(url), clipped)
                number += 1


@dataclass(frozen=True, slots=True)
class Listed:
    """SegmentList segments, each named by the MPD."""

    segments: tuple[MediaSegment, ...]


@dataclass(frozen=True, slots=True)
class Indexed:
    """SegmentBase: one file whose segments the `sidx` at `index` lists."""

    url: str
    index: tuple[int, int]  # first and last byte of the index range
    end: Fraction | None


@dataclass(frozen=True, slots=True)
class PeriodTrack:
    """One Representation within one Period."""

    init: Resource | None
    listing: Timeline | Listed | Indexed


@dataclass(frozen=True)
class HlsRendition:
    name: str  # stable and URL-safe: "v-<Representation@id>" or "a-<Representation@id>"
    kind: Kind
    bandwidth: int
    codecs: str | None
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    lang: str | None = None
    label: str | None = None
    channels: int | None = None
    main: bool = False  # Role "main": the default audio rendition
    adaptation_set: int = 0  # which of the first Period's AdaptationSets it comes from
    tracks: tuple[PeriodTrack, ...] = ()  # one per Period, in presentation order


@dataclass(frozen=True)
class HlsPresentation:
    renditions: tuple[HlsRendition, ...]
    duration: float | None = None  # seconds, when the MPD states it

    def rendition(self, name: str) -> HlsRendition:
        for rendition in self.renditions:
            if rendition.name == name:
                return rendition
        raise KeyError(name)


# -- reading the MPD ---------------------------------------------------------------------------


def read_mpd(body: bytes, mpd_url: str, *, max_bytes: int = MAX_MPD_BYTES) -> HlsPresentation:
    """What a static MPD at `mpd_url` (its final URL, after redirects) offers as HLS."""
    try:
        # The same guarded parse the MPD rewriter uses: no DTDs, entities or network.
        root = dash.parse_document(body, max_bytes)
    except DashToHlsError:
        raise
    except PlaylistError as exc:
        raise DashToHlsError(str(exc)) from None
    if root.get("type", "static") == "dynamic":
        raise DashToHlsError("dynamic MPDs cannot be served as HLS")
    mpd_base = _base(root, mpd_url)
    periods = _periods(root, mpd_base)
    if not periods:
        raise DashToHlsError("the MPD has no Period with media")
    if len(periods) > 1 and any(
        _addressing(period.element, s.element, r) == "SegmentBase"
        for period in periods
        for s in period.sets
        if s.kind in ("video", "audio")
        for r in s.representations
    ):
        raise DashToHlsError("SegmentBase across several Periods is not supported")
    first = periods[0]
    video = _usable(first.sets, "video")
    audio = _usable(first.sets, "audio")
    if not video and not audio:
        raise DashToHlsError("the MPD has no video or audio")
    renditions: list[HlsRendition] = []
    names: set[str] = set()
    for kind, sets in (("video", video), ("audio", audio)):
        for position, chosen in enumerate(sets):
            for representation in chosen.representations:
                if representation.get("dependencyId"):
                    continue
                tracks = tuple(
                    _continue(period, index, kind, position, chosen, representation)
                    for index, period in enumerate(periods)
                )
                rendition = _rendition(
                    kind, chosen, representation, first.sets.index(chosen), tracks, names
                )
                renditions.append(rendition)
    total = _duration(root.get("mediaPresentationDuration"))
    if total is None and all(period.duration is not None for period in periods):
        total = sum((p.duration for p in periods if p.duration is not None), Fraction(0))
    return HlsPresentation(tuple(renditions), float(total) if total is not None else None)


@dataclass(slots=True)
class _Set:
    element: etree._Element
    kind: str | None
    base: str
    representations: list[etree._Element]
    refused: str | None  # why HLS cannot carry it, or None


@dataclass(slots=True)
class _Period:
    element: etree._Element
    base: str
    duration: Fraction | None
    sets: list[_Set]


def _periods(root: etree._Element, mpd_base: str) -> list[_Period]:
    elements = _children(root, "Period")
    total = _duration(root.get("mediaPresentationDuration"))
    starts: list[Fraction | None] = []
    durations: list[Fraction | None] = []
    previous_end: Fraction | None = Fraction(0)
    for element in elements:
        if element.get(f"{{{dash.XLINK_NS}}}href"):
            raise DashToHlsError("remote (xlink) Periods are not supported")
        start = _duration(element.get("start"))
        start = start if start is not None else previous_end
        length = _duration(element.get("duration"))
        starts.append(start)
        durations.append(length)
        previous_end = start + length if start is not None and length is not None else None
    periods = []
    for index, element in enumerate(elements):
        length = durations[index]
        following = starts[index + 1] if index + 1 < len(elements) else total
        if length is None and following is not None and starts[index] is not None:
            length = following - starts[index]
        base = _base(element, mpd_base)
        sets = [_adaptation_set(s, base) for s in _children(element, "AdaptationSet")]
        if length is not None and length <= 0:
            continue  # a Period that presents nothing
        if any(s.kind in ("video", "audio") for s in sets):
            periods.append(_Period(element, base, length, sets))
    return periods


def _adaptation_set(element: etree._Element, period_base: str) -> _Set:
    base = _base(element, period_base)
    representations = _children(element, "Representation")
    kind = _kind(element, representations)
    refused = None
    if element.get(f"{{{dash.XLINK_NS}}}href"):
        refused = "remote (xlink) AdaptationSets are not supported"
    elif _children(element, "ContentProtection") or any(
        _children(r, "ContentProtection") for r in representations
    ):
        refused = "encrypted (ContentProtection) DASH cannot be served as HLS"
    else:
        for representation in representations:
            mime = representation.get("mimeType") or element.get("mimeType")
            if mime and _container(mime) is None:
                refused = f"not fMP4/CMAF or MPEG-TS segments ({mime})"
                break
        else:
            if representations and all(r.get("dependencyId") for r in representations):
                refused = "layered (dependencyId) Representations cannot be served as HLS"
            elif not representations:
                refused = "an AdaptationSet without Representations"
    return _Set(element, kind, base, representations, refused)


def _usable(sets: Sequence[_Set], kind: str) -> list[_Set]:
    """The sets of `kind` HLS can carry; an error when there are some but none of them is."""
    of_kind = [s for s in sets if s.kind == kind]
    usable = [s for s in of_kind if s.refused is None]
    if of_kind and not usable:
        raise DashToHlsError(str(of_kind[0].refused))
    return usable


def _continue(
    period: _Period,
    index: int,
    kind: str,
    position: int,
    chosen: _Set,
    representation: etree._Element,
) -> PeriodTrack:
    """The track that carries `representation` of the first Period on in Period `index`."""
    if index == 0:
        return _track(period, chosen, representation)
    of_kind = [s for s in period.sets if s.kind == kind]
    set_id = chosen.element.get("id")
    match = next((s for s in of_kind if set_id is not None and s.element.get("id") == set_id), None)
    if match is None:
        usable = [s for s in of_kind if s.refused is None]
        match = usable[position] if position < len(usable) else None
    if match is None:
        refused = next((s.refused for s in of_kind if s.refused is not None), None)
        raise DashToHlsError(
            refused or f"Period {index + 1} has no {kind} to continue the first Period's"
        )
    if match.refused is not None:
        raise DashToHlsError(match.refused)
    candidates = [r for r in match.representations if not r.get("dependencyId")]
    if not candidates:
        raise DashToHlsError(f"Period {index + 1} has no {kind} to continue the first Period's")
    same = next((r for r in candidates if r.get("id") == representation.get("id")), None)
    if same is None:
        ranked = sorted(chosen.representations, key=_bandwidth)
        rank = ranked.index(representation)
        same = sorted(candidates, key=_bandwidth)[min(rank, len(candidates) - 1)]
    return _track(period, match, same)


def _rendition(
    kind: str,
    chosen: _Set,
    representation: etree._Element,
    adaptation_set: int,
    tracks: tuple[PeriodTrack, ...],
    names: set[str],
) -> HlsRendition:
    set_element = chosen.element

    def attribute(name: str) -> str | None:
        return representation.get(name) or set_element.get(name)

    raw_id = representation.get("id") or str(len(names))
    stem = ("v-" if kind == "video" else "a-") + (
        re.sub(r"[^A-Za-z0-9_-]+", "_", raw_id).strip("_") or "r"
    )
    name, suffix = stem, 2
    while name in names:
        name, suffix = f"{stem}-{suffix}", suffix + 1
    names.add(name)
    label = _text(_children(representation, "Label")) or _text(_children(set_element, "Label"))
    roles = [
        r.get("value") for r in _children(set_element, "Role") + _children(representation, "Role")
    ]
    return HlsRendition(
        name=name,
        kind="video" if kind == "video" else "audio",
        bandwidth=_bandwidth(representation),
        codecs=attribute("codecs"),
        width=_positive(attribute("width")),
        height=_positive(attribute("height")),
        frame_rate=_frame_rate(attribute("frameRate")),
        lang=attribute("lang"),
        label=label or attribute("label"),
        channels=_channels(
            _children(representation, "AudioChannelConfiguration")
            or _children(set_element, "AudioChannelConfiguration")
        ),
        main="main" in roles,
        adaptation_set=adaptation_set,
        tracks=tracks,
    )


# -- addressing --------------------------------------------------------------------------------

_ADDRESSING = ("SegmentBase", "SegmentList", "SegmentTemplate")


def _addressing(
    period: etree._Element, adaptation: etree._Element, representation: etree._Element
) -> str | None:
    found = [
        _local(child.tag)
        for level in (period, adaptation, representation)
        for child in _children(level, *_ADDRESSING)
    ]
    return found[-1] if found else None


def _track(period: _Period, chosen: _Set, representation: etree._Element) -> PeriodTrack:
    levels = (period.element, chosen.element, representation)
    kind = _addressing(*levels)
    if kind is None:
        raise DashToHlsError("a Representation without SegmentBase, SegmentList or SegmentTemplate")
    # A lower level's element of the same kind overrides attributes and children of the
    # ones above it (ISO/IEC 23009-1 §5.3.9.1).
    chain = [child for level in levels for child in _children(level, kind)]
    base = _base(representation, chosen.base)
    container = _container(representation.get("mimeType") or chosen.element.get("mimeType"))
    if kind == "SegmentTemplate":
        track = _template(chain, base, representation, period.duration)
    elif kind == "SegmentList":
        track = _list(chain, base, period.duration)
    else:
        track = _segment_base(chain, base, period.duration)
    if track.init is None and container != "ts":
        raise DashToHlsError("fMP4 segments without an initialization segment")
    return track


def _attribute(chain: Sequence[etree._Element], name: str) -> str | None:
    for element in reversed(chain):
        value = element.get(name)
        if value is not None:
            return value
    return None


def _child(chain: Sequence[etree._Element], name: str) -> list[etree._Element]:
    for element in reversed(chain):
        found = _children(element, name)
        if found:
            return found
    return []


def _timescale(chain: Sequence[etree._Element]) -> int:
    timescale = _int(_attribute(chain, "timescale") or "1", "@timescale")
    if timescale <= 0:
        raise DashToHlsError("a timescale of zero")
    return timescale


def _initialization(chain: Sequence[etree._Element], base: str) -> Resource | None:
    found = _child(chain, "Initialization")
    if not found:
        return None
    element = found[0]
    source = element.get("sourceURL")
    url = _http(resolve(base, source) if source else base)
    raw = element.get("range")
    return Resource(url, _byte_range(raw) if raw else None)


def _template(
    chain: Sequence[etree._Element],
    base: str,
    representation: etree._Element,
    period_duration: Fraction | None,
) -> PeriodTrack:
    media = _attribute(chain, "media")
    if not media:
        raise DashToHlsError("a SegmentTemplate without @media")
    representation_id = representation.get("id") or ""
    bandwidth = _bandwidth(representation)
    initialization = _attribute(chain, "initialization")
    if initialization:
        values = {"RepresentationID": representation_id, "Bandwidth": bandwidth}
        init: Resource | None = Resource(_http(resolve(base, _expand(initialization, values))))
    else:
        init = _initialization(chain, base)
    timescale = _timescale(chain)
    offset = _int(_attribute(chain, "presentationTimeOffset") or "0", "@presentationTimeOffset")
    timeline = _child(chain, "SegmentTimeline")
    if timeline:
        runs = _timeline_runs(timeline[0], timescale, offset, period_duration)
    else:
        runs = (_duration_run(chain, timescale, offset, period_duration),)
    listing = Timeline(
        media,
        base,
        representation_id,
        bandwidth,
        timescale,
        offset,
        _int(_attribute(chain, "startNumber") or "1", "@startNumber"),
        runs,
        period_duration,
    )
    # Expanding one name now refuses a bad template before any playlist is written.
    _expand(media, {"RepresentationID": representation_id, "Number": 1, "Time": 0, "Bandwidth": 1})
    return PeriodTrack(init, listing)


def _duration_run(
    chain: Sequence[etree._Element], timescale: int, offset: int, period: Fraction | None
) -> tuple[int, int, int]:
    raw = _attribute(chain, "duration")
    if raw is None:
        raise DashToHlsError("a SegmentTemplate with neither @duration nor a SegmentTimeline")
    duration = _int(raw, "@duration")
    if duration <= 0:
        raise DashToHlsError("a segment @duration of zero")
    if period is None:
        raise DashToHlsError("the MPD states no duration to count its segments by")
    count = math.ceil(period * timescale / duration)
    _check_count(count)
    return (offset, duration, count)


def _timeline_runs(
    timeline: etree._Element, timescale: int, offset: int, period: Fraction | None
) -> tuple[tuple[int, int, int], ...]:
    entries = _children(timeline, "S")
    if not entries:
        raise DashToHlsError("an empty SegmentTimeline")
    runs: list[tuple[int, int, int]] = []
    time = 0
    total = 0
    for index, entry in enumerate(entries):
        raw_time = entry.get("t")
        start = _int(raw_time, "S@t") if raw_time is not None else time
        duration = _int(entry.get("d") or "", "S@d")
        if duration <= 0:
            raise DashToHlsError("a SegmentTimeline entry with no duration")
        repeat = _int(entry.get("r") or "0", "S@r")
        if repeat >= 0:
            count = repeat + 1
        else:
            # r="-1": repeat up to the next entry's start, or to the end of the Period.
            following = entries[index + 1].get("t") if index + 1 < len(entries) else None
            if following is not None:
                end = Fraction(_int(following, "S@t"))
            elif index + 1 < len(entries) or period is None:
                raise DashToHlsError("an open-ended SegmentTimeline repeat with no end")
            else:
                end = offset + period * timescale
            count = max(0, math.ceil((end - start) / duration))
        total += count
        _check_count(total)
        runs.append((start, duration, count))
        time = start + duration * count
    return tuple(runs)


def _list(chain: Sequence[etree._Element], base: str, period: Fraction | None) -> PeriodTrack:
    urls = _child(chain, "SegmentURL")
    if not urls:
        raise DashToHlsError("a SegmentList without SegmentURLs")
    _check_count(len(urls))
    timescale = _timescale(chain)
    offset = _int(_attribute(chain, "presentationTimeOffset") or "0", "@presentationTimeOffset")
    timeline = _child(chain, "SegmentTimeline")
    raw_duration = _attribute(chain, "duration")
    if timeline:
        runs = _timeline_runs(timeline[0], timescale, offset, period)
    elif raw_duration is not None:
        duration = _int(raw_duration, "@duration")
        if duration <= 0:
            raise DashToHlsError("a segment @duration of zero")
        runs = ((offset, duration, len(urls)),)
    elif len(urls) == 1 and period is not None:
        only = MediaSegment(_segment_url(urls[0], base), period)  # the whole Period
        return PeriodTrack(_initialization(chain, base), Listed((only,)))
    else:
        raise DashToHlsError("a SegmentList with neither @duration nor a SegmentTimeline")
    times = ((start + i * d, d) for start, d, count in runs for i in range(count))
    segments = []
    for element, (time, duration) in zip(urls, times, strict=False):
        clipped = _clip(Fraction(time - offset, timescale), Fraction(duration, timescale), period)
        if clipped is None:
            break
        segments.append(MediaSegment(_segment_url(element, base), clipped))
    return PeriodTrack(_initialization(chain, base), Listed(tuple(segments)))


def _segment_url(element: etree._Element, base: str) -> Resource:
    media = element.get("media")
    raw = element.get("mediaRange")
    return Resource(
        _http(resolve(base, media) if media else base), _byte_range(raw) if raw else None
    )


def _segment_base(
    chain: Sequence[etree._Element], base: str, period: Fraction | None
) -> PeriodTrack:
    index = _child(chain, "RepresentationIndex")
    raw = _attribute(chain, "indexRange")
    if index:
        if index[0].get("sourceURL"):
            raise DashToHlsError("a SegmentBase index in a file of its own is not supported")
        raw = raw or index[0].get("range")
    if not raw:
        raise DashToHlsError("a SegmentBase without @indexRange")
    first, last = _byte_range(raw)
    init = _initialization(chain, base)
    url = _http(base)
    if init is None and first > 0:
        # On-demand files put the index right after the movie header: all of it is init.
        init = Resource(url, (0, first - 1))
    return PeriodTrack(init, Indexed(url, (first, last), period))


def _clip(start: Fraction, duration: Fraction, end: Fraction | None) -> Fraction | None:
    """A segment's duration within its Period, or None once segments start after it ends."""
    if end is None:
        return duration
    if start >= end:
        return None
    return min(duration, end - start)


def _check_count(count: int) -> None:
    if count > MAX_SEGMENTS:
        raise DashToHlsError(f"more than {MAX_SEGMENTS} segments in one Representation")


# -- writing playlists -------------------------------------------------------------------------


def master_playlist(p: HlsPresentation, media_uri: Callable[[HlsRendition], str]) -> str:
    """The multivariant playlist: video variants with an audio group, or audio variants."""
    videos = [r for r in p.renditions if r.kind == "video"]
    audios = [r for r in p.renditions if r.kind == "audio"]
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if not videos:
        for audio in audios:
            lines.append("#EXT-X-STREAM-INF:" + _stream_inf(audio, audio.bandwidth, audio.codecs))
            lines.append(_uri(media_uri(audio)))
        return "\n".join(lines) + "\n"
    group = _audio_group(audios)
    default = next((a for a in group if a.main), group[0] if group else None)
    names: set[str] = set()
    for index, audio in enumerate(group):
        named_lang = audio.lang if audio.lang not in (None, "und", "zxx", "mul") else None
        name = _quoted(audio.label or named_lang or f"Audio {index + 1}")
        while name in names:
            name += f" {index + 1}"
        names.add(name)
        attributes = ["TYPE=AUDIO", 'GROUP-ID="audio"', f'NAME="{name}"']
        if audio.lang and re.fullmatch(r"[A-Za-z0-9-]{1,35}", audio.lang):
            attributes.append(f'LANGUAGE="{audio.lang}"')
        attributes.append(f"DEFAULT={'YES' if audio is default else 'NO'}")
        attributes.append("AUTOSELECT=YES")
        if audio.channels:
            attributes.append(f'CHANNELS="{audio.channels}"')
        attributes.append(f'URI="{_uri(media_uri(audio))}"')
        lines.append("#EXT-X-MEDIA:" + ",".join(attributes))
    audio_bandwidth = max((a.bandwidth for a in group), default=0)
    audio_codecs = list(dict.fromkeys(c for a in group for c in _codec_list(a.codecs)))
    audio_known = all(a.codecs for a in group)
    for video in videos:
        codecs = None
        if video.codecs and audio_known:
            codecs = ",".join(dict.fromkeys([*_codec_list(video.codecs), *audio_codecs]))
        attributes = _stream_inf(video, video.bandwidth + audio_bandwidth, codecs)
        if group:
            attributes += ',AUDIO="audio"'
        lines.append("#EXT-X-STREAM-INF:" + attributes)
        lines.append(_uri(media_uri(video)))
    return "\n".join(lines) + "\n"


def media_playlist(
    p: HlsPresentation,
    rendition_name: str,
    segment_uri: Callable[[str], str],
    sidx: bytes | None = None,
) -> str:
    """The VOD media playlist of one rendition; `segment_uri` maps absolute upstream URLs.

    A SegmentBase rendition needs `sidx`: the bytes of the range `sidx_byte_range` names.
    KeyError for a rendition the presentation does not have.
    """
    rendition = p.rendition(rendition_name)
    body: list[str] = []
    longest = Fraction(0)
    count = 0
    for index, track in enumerate(rendition.tracks):
        if index > 0:
            body.append("#EXT-X-DISCONTINUITY")
        if track.init is not None:
            uri = _uri(segment_uri(track.init.url))
            body.append(f'#EXT-X-MAP:URI="{uri}"' + _map_range(track.init))
        for segment in _segments(track, sidx):
            count += 1
            _check_count(count)
            longest = max(longest, segment.duration)
            body.append(f"#EXTINF:{_seconds(segment.duration)},")
            if segment.resource.byte_range is not None:
                body.append(f"#EXT-X-BYTERANGE:{_length_at(segment.resource.byte_range)}")
            body.append(_uri(segment_uri(segment.resource.url)))
    if count == 0:
        raise DashToHlsError(f"rendition {rendition_name} has no segments")
    head = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        # RFC 8216bis §4.4.3.1: no EXTINF, rounded, may exceed it; the ceiling never does.
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(longest))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        # DASH ISO BMFF profiles start every (sub)segment with a stream access point.
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    return "\n".join([*head, *body, "#EXT-X-ENDLIST"]) + "\n"


def sidx_byte_range(p: HlsPresentation, rendition_name: str) -> tuple[str, int, int] | None:
    """(URL, first byte, last byte) of the index a SegmentBase rendition needs, else None."""
    for track in p.rendition(rendition_name).tracks:
        if isinstance(track.listing, Indexed):
            first, last = track.listing.index
            return track.listing.url, first, last
    return None


def _segments(track: PeriodTrack, sidx: bytes | None) -> Iterator[MediaSegment]:
    listing = track.listing
    if isinstance(listing, Timeline):
        yield from listing.segments()
    elif isinstance(listing, Listed):
        yield from listing.segments
    else:
        if sidx is None:
            raise DashToHlsError("SegmentBase needs its sidx")
        try:
            references = sidx_references(sidx, listing.index[0])
        except PlaylistError as exc:
            raise DashToHlsError(str(exc)) from None
        start = Fraction(0)
        for reference in references:
            clipped = _clip(start, reference.duration, listing.end)
            if clipped is None:
                return
            span = (reference.offset, reference.offset + reference.size - 1)
            yield MediaSegment(Resource(listing.url, span), clipped)
            start += reference.duration


def _audio_group(audios: Sequence[HlsRendition]) -> list[HlsRendition]:
    """One rendition per audio AdaptationSet: its highest-bandwidth Representation."""
    best: dict[int, HlsRendition] = {}
    for audio in audios:
        known = best.get(audio.adaptation_set)
        if known is None or audio.bandwidth > known.bandwidth:
            best[audio.adaptation_set] = audio
    return [best[key] for key in sorted(best)]


def _stream_inf(rendition: HlsRendition, bandwidth: int, codecs: str | None) -> str:
    attributes = [f"BANDWIDTH={max(1, bandwidth)}"]
    if codecs:
        attributes.append(f'CODECS="{_quoted(codecs)}"')
    if rendition.width and rendition.height:
        attributes.append(f"RESOLUTION={rendition.width}x{rendition.height}")
    if rendition.frame_rate:
        attributes.append(f"FRAME-RATE={rendition.frame_rate:.3f}")
    return ",".join(attributes)


def _map_range(init: Resource) -> str:
    return f',BYTERANGE="{_length_at(init.byte_range)}"' if init.byte_range else ""


def _length_at(byte_range: tuple[int, int]) -> str:
    first, last = byte_range
    return f"{last - first + 1}@{first}"


def _seconds(value: Fraction) -> str:
    """At least three decimals, up to six: exact for every common timescale's ticks."""
    text = f"{float(value):.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(3, '0')}"


def _uri(uri: str) -> str:
    """A URI that can also stand in a quoted attribute; it holds no line break, since
    `is_http_url` admits no whitespace in the upstream URLs references are made from."""
    return uri.replace('"', "%22")


def _codec_list(codecs: str | None) -> list[str]:
    return [c.strip() for c in (codecs or "").split(",") if c.strip()]


def _quoted(value: str) -> str:
    """A value an HLS quoted-string can hold: no double quote, no line break."""
    return re.sub(r'["\r\n]', "'", value).strip()


# -- small readers -----------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"\$([A-Za-z]*)(%[^$]*)?\$")
_FORMAT_TAG = re.compile(r"%0?(\d{0,2})([diuxXo])")


def _expand(template: str, values: dict[str, str | int]) -> str:
    """A SegmentTemplate string with its `$…$` identifiers substituted (§5.3.9.4.4)."""

    def one(match: re.Match[str]) -> str:
        name, fmt = match.group(1), match.group(2)
        if not name and not fmt:
            return "$"
        if name not in values:
            raise DashToHlsError(f"the template identifier ${name}$ is not supported here")
        value = values[name]
        if not fmt:
            return str(value)
        tag = _FORMAT_TAG.fullmatch(fmt)
        if isinstance(value, str) or tag is None:
            raise DashToHlsError(f"an unreadable template identifier: ${name}{fmt[:10]}$")
        width, conversion = tag.group(1) or "1", tag.group(2)
        return format(value, f"0{width}{'d' if conversion in 'diu' else conversion}")

    return _IDENTIFIER.sub(one, template)


def _children(element: etree._Element, *names: str) -> list[etree._Element]:
    """Child elements by local name, whatever the namespace prefix (comments skipped)."""
    return [child for child in element if isinstance(child.tag, str) and _local(child.tag) in names]


def _local(tag: str) -> str:
    # Not etree.QName: a recovered parse leaves undeclared prefixes in tag names, which it
    # refuses to read.
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _text(elements: Sequence[etree._Element]) -> str | None:
    return (elements[0].text or "").strip() or None if elements else None


def _base(element: etree._Element, parent: str) -> str:
    """The base URL below `element`: its first BaseURL child resolved against `parent`."""
    found = _children(element, "BaseURL")
    written = (found[0].text or "").strip() if found else ""
    return resolve(parent, written) if written else parent


def _http(url: str) -> str:
    if not is_http_url(url):
        raise DashToHlsError(f"a media URL that is not http(s): {url[:80]}")
    return url


def _kind(element: etree._Element, representations: Sequence[etree._Element]) -> str | None:
    first = representations[0] if representations else element
    content = element.get("contentType") or first.get("contentType")
    if content:
        return content
    mime = element.get("mimeType") or first.get("mimeType") or ""
    codecs = (element.get("codecs") or first.get("codecs") or "").lower()
    if codecs.startswith(("stpp", "wvtt")) or "ttml" in mime or "vtt" in mime:
        return "text"
    if mime.split("/")[0] in ("video", "audio", "text", "image"):
        return mime.split("/")[0]
    if codecs.startswith(("avc", "hvc", "hev", "av01", "vp08", "vp09", "dvh", "vvc")):
        return "video"
    if codecs.startswith(("mp4a", "ac-3", "ec-3", "ac-4", "opus", "flac", "dts", "mha", "mhm")):
        return "audio"
    if element.get("width") or first.get("width"):
        return "video"
    if element.get("audioSamplingRate") or first.get("audioSamplingRate"):
        return "audio"
    return None


def _container(mime: str | None) -> str | None:
    """ "mp4" or "ts" for what HLS can carry as is; None for anything else."""
    if mime is None:
        return "mp4"
    subtype = mime.split(";")[0].strip().lower().partition("/")[2]
    return {"mp4": "mp4", "iso.segment": "mp4", "mp2t": "ts"}.get(subtype)


def _bandwidth(representation: etree._Element) -> int:
    return _positive(representation.get("bandwidth")) or 0


def _positive(value: str | None) -> int | None:
    if value is None or not re.fullmatch(r"\s*\d{1,15}\s*", value):
        return None
    number = int(value)
    return number if number > 0 else None


def _int(value: str | None, what: str) -> int:
    text = (value or "").strip()
    if not re.fullmatch(r"-?\d{1,20}", text):
        raise DashToHlsError(f"{what} is not an integer: {text[:40]!r}")
    return int(text)


def _byte_range(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,15})-(\d{1,15})\s*", value)
    if match is None or int(match.group(2)) < int(match.group(1)):
        raise DashToHlsError(f"an unreadable byte range: {value[:40]!r}")
    return int(match.group(1)), int(match.group(2))


def _duration(value: str | None) -> Fraction | None:
    if not value:
        return None
    seconds = dash.parse_duration(value)
    if seconds is None or not math.isfinite(seconds):
        return None
    return Fraction(seconds).limit_denominator(1_000_000)


def _frame_rate(value: str | None) -> float | None:
    if not value:
        return None
    try:
        rate = Fraction(value.strip())
    except (ValueError, ZeroDivisionError):
        return None
    return float(rate) if 0 < rate < 1000 else None


# AudioChannelConfiguration schemes: a channel count, a Dolby channel mask, a CICP index.
_CHANNEL_COUNT = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
_DOLBY_MASK = "tag:dolby.com,2014:dash:audio_channel_configuration:2011"
_CICP = "urn:mpeg:mpegB:cicp:ChannelConfiguration"
_CICP_CHANNELS = {
    1: 1,
    2: 2,
    3: 3,
    4: 4,
    5: 5,
    6: 6,
    7: 8,
    9: 3,
    10: 4,
    11: 7,
    12: 8,
    14: 8,
    16: 10,
    17: 12,
    19: 12,
    20: 14,
}


def _channels(configurations: Sequence[etree._Element]) -> int | None:
    for element in configurations:
        scheme, value = element.get("schemeIdUri", ""), (element.get("value") or "").strip()
        count = int(value) if re.fullmatch(r"\d{1,3}", value) else None
        if scheme == _CHANNEL_COUNT and count:
            return count
        if scheme == _DOLBY_MASK and re.fullmatch(r"[0-9A-Fa-f]{1,8}", value):
            return bin(int(value, 16)).count("1") or None
        if scheme == _CICP and count is not None:
            return _CICP_CHANNELS.get(count)
    return None
