"""Content types come from the bytes when upstream mislabels segments."""

from gateway.sniff import sniff_content_type

TS = b"\x47" + b"\x00" * 187 + b"\x47" + b"\x00" * 10
FMP4 = b"\x00\x00\x00\x18ftypiso6" + b"\x00" * 20


def test_ts_disguised_as_png_is_served_as_mpeg_ts():
    assert sniff_content_type(TS, "image/png", "/x/seg1.png") == "video/mp2t"


def test_fmp4_fragments_are_detected_from_their_boxes():
    assert sniff_content_type(FMP4, "application/octet-stream", "/x/a.jpg") == "video/mp4"
    moof = b"\x00\x00\x00\x10moof" + b"\x00" * 8
    assert sniff_content_type(moof, None, "/x/a") == "video/mp4"


def test_believable_upstream_types_are_kept_and_generic_ones_fall_back_to_the_extension():
    assert sniff_content_type(b"\x00\x01", "audio/mpeg", "/a.bin") == "audio/mpeg"
    assert sniff_content_type(b"\x00\x01", "application/octet-stream", "/a/key.key") == (
        "application/octet-stream"
    )
    assert sniff_content_type(b"WEBVTT\n", "text/plain", "/a/sub.vtt") == "text/vtt"


def test_a_short_key_file_that_starts_like_a_ts_packet_is_not_called_media():
    key = b"\x47" + bytes(range(15))
    assert sniff_content_type(key, "application/octet-stream", "/k/key.bin") == (
        "application/octet-stream"
    )
