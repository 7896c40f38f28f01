"""Settings from the environment: sizes, lists, and one-line errors."""

import pytest

from gateway.settings import SettingsError, load_settings, parse_byte_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("10GiB", 10 * 1024**3), ("512MB", 512 * 10**6), ("1048576", 1048576), ("1.5KiB", 1536)],
)
def test_sizes_accept_units(text, size):
    assert parse_byte_size(text) == size


def test_settings_read_the_gateway_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("GATEWAY_PORT", "9999")
    monkeypatch.setenv("GATEWAY_CACHE_MAX_BYTES", "2GiB")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("GATEWAY_CACHE_KEY_IGNORE_PARAMS", '{"cdn.example.com": ["token"]}')
    monkeypatch.setenv("GATEWAY_CACHE_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.port == 9999
    assert settings.cache_max_bytes == 2 * 1024**3
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.cache_key_ignore_params == {"cdn.example.com": ["token"]}
    assert settings.base_url == "http://127.0.0.1:9999"


def test_overrides_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("GATEWAY_PORT", "9999")
    assert load_settings(port=7000).port == 7000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_CACHE_MAX_BYTES", "lots"),
        ("GATEWAY_PORT", "-1"),
        ("GATEWAY_PUBLIC_URL", "ftp://x"),
        ("GATEWAY_EGRESS_PROXY", "socks4://127.0.0.1:1080"),
        ("GATEWAY_ALLOW_PRIVATE_UPSTREAMS", "perhaps"),
    ],
)
def test_invalid_settings_give_one_line_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert name in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "proxy",
    ["http://127.0.0.1:3128", "https://user:pw@127.0.0.1:3129", "socks5://127.0.0.1:1080"],
)
def test_the_egress_proxy_is_one_the_upstream_client_speaks(monkeypatch, proxy):
    monkeypatch.setenv("GATEWAY_EGRESS_PROXY", proxy)
    assert load_settings().egress_proxy == proxy
