"""The command line as a user runs it: `hls-gateway serve` and `hls-gateway url`."""

import asyncio
import os
import stat
import sys

import aiohttp
import pytest

from tests.support.ports import free_port

CLI = [sys.executable, "-m", "gateway.cli"]


def env_for(cache_dir, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({"GATEWAY_CACHE_DIR": str(cache_dir), **extra})
    return env


async def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def served(tmp_path):
    """`hls-gateway serve` in its own process, embedded index, no Redis, generated secret."""
    port = free_port()
    env = env_for(tmp_path / "cache", GATEWAY_ALLOW_PRIVATE_UPSTREAMS="true")
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(base + "/healthz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    yield base, env, process
    if process.returncode is None:
        process.terminate()
        await process.wait()


async def test_url_prints_one_line_that_plays_through_serve(served, origin, media):
    base, env, _ = served
    code, out, err = await run(
        "url",
        origin.base_url + "/ts/index.m3u8",
        "--header",
        "Referer: https://site.example/",
        env={**env, "GATEWAY_PORT": base.rsplit(":", 1)[1]},
    )
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(base + "/p/")
    assert lines[0].endswith("/index.m3u8")
    async with aiohttp.ClientSession() as session, session.get(lines[0]) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        assert (await response.read()).startswith(b"#EXTM3U")
    assert origin.requests[0].headers["Referer"] == "https://site.example/"


async def test_serve_generates_a_private_secret_once_with_one_warning(served, tmp_path):
    _, _, process = served
    secret = tmp_path / "cache" / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    process.terminate()
    _, err = await process.communicate()
    assert err.decode().count("GATEWAY_SECRET is not set") == 1


async def test_url_uses_the_public_url_setting(tmp_path):
    env = env_for(tmp_path, GATEWAY_PUBLIC_URL="https://gw.example.com", GATEWAY_SECRET="x" * 32)
    code, out, _ = await run("url", "https://cdn.example.com/live/master.m3u8?sig=1", env=env)
    assert code == 0
    assert out.startswith("https://gw.example.com/p/")
    assert out.strip().endswith("/master.m3u8?sig=1")
    assert "cdn.example.com" not in out


@pytest.mark.parametrize(
    ("args", "extra_env"),
    [
        (["serve"], {"GATEWAY_CACHE_MAX_BYTES": "lots"}),
        (["serve", "--port", "70000"], {}),
        (["serve", "--workers", "2"], {}),
        (["url", "https://x/a.m3u8"], {"GATEWAY_PUBLIC_URL": "nope"}),
        (["url", "ftp://x/a.m3u8"], {}),
        (["url", "https://x/a.m3u8", "--header", "Host: evil"], {}),
    ],
)
async def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, extra_env):
    code, out, err = await run(*args, env=env_for(tmp_path, **extra_env))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


async def test_the_links_api_needs_the_key_and_mints_working_links(make_gateway, origin):
    gw = await make_gateway(api_key="k3y")
    body = {"url": origin.base_url + "/ts/seg_000.ts", "headers": {"Referer": "https://r/"}}
    async with aiohttp.ClientSession() as session:
        async with session.post(gw.base_url + "/api/links", json=body) as response:
            assert response.status == 403
        async with session.post(
            gw.base_url + "/api/links", json=body, headers={"Authorization": "Bearer k3y"}
        ) as response:
            assert response.status == 200
            link = (await response.json())["url"]
        path = link[link.index("/p/") :]
        async with session.get(gw.base_url + path) as response:
            assert response.status == 200
        async with session.post(
            gw.base_url + "/api/links",
            json={"url": "file:///etc/passwd"},
            headers={"X-API-Key": "k3y"},
        ) as response:
            assert response.status == 400
    assert origin.requests[0].headers["Referer"] == "https://r/"


async def test_the_links_api_is_absent_without_a_key(make_gateway):
    gw = await make_gateway()
    async with aiohttp.ClientSession() as session:
        async with session.post(gw.base_url + "/api/links", json={"url": "https://x/"}) as response:
            assert response.status == 404


async def test_resolve_prints_a_stable_watch_link_that_plays_through_serve(served, origin):
    base, env, _ = served
    origin.set_file(
        "/watch/page.html",
        b'<html><title>t</title><video><source src="/ts/index.m3u8" type="application/x-mpegURL"></video></html>',
    )
    code, out, err = await run(
        "resolve",
        origin.base_url + "/watch/page.html",
        env={**env, "GATEWAY_PORT": base.rsplit(":", 1)[1]},
    )
    assert code == 0, err
    link = out.strip()
    assert link.startswith(base + "/watch/") and link.endswith("/index.m3u8")
    async with aiohttp.ClientSession() as session, session.get(link) as response:
        assert response.status == 200
        assert (await response.read()).startswith(b"#EXTM3U")


async def test_resolve_of_a_page_without_a_stream_fails_with_one_line(tmp_path, origin):
    origin.set_file("/watch/none.html", b"<html><title>x</title></html>")
    env = env_for(tmp_path, GATEWAY_SECRET="x" * 32, GATEWAY_ALLOW_PRIVATE_UPSTREAMS="true")
    code, out, err = await run("resolve", origin.base_url + "/watch/none.html", env=env)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
