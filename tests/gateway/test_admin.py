"""Cache administration from the command line and over HTTP."""

import asyncio
import json
import os
import sys

import aiohttp

ADMIN = {"Authorization": "Bearer admin-token"}


async def cli(*args: str, env: dict) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, out.decode(), err.decode()


def env_for(cache_dir, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_CACHE_DIR=str(cache_dir),
        GATEWAY_SECRET="s" * 32,
        GATEWAY_ALLOW_PRIVATE_UPSTREAMS="true",
        **extra,
    )
    return env


def media_files(origin) -> list[str]:
    return [r.path_qs for r in origin.requests if not r.path_qs.endswith(".m3u8")]


async def test_cli_warm_fetches_every_variant_then_stats_and_purge(origin, tmp_path):
    env = env_for(tmp_path / "cache")
    code, out, err = await cli("cache", "warm", origin.base_url + "/master/master.m3u8", env=env)
    assert code == 0, err
    fetched = media_files(origin)
    for variant in ("v0", "v1", "audio"):
        assert any(path.startswith(f"/master/{variant}/seg_") for path in fetched)
    assert len(fetched) == len(set(fetched)) == 13
    assert "13 fetched" in out and "warming [" in err

    code, out, _ = await cli("cache", "stats", env=env)
    stats = json.loads(out)
    on_disk = sum((origin.root / p.lstrip("/")).stat().st_size for p in fetched)
    assert (stats["entries"], stats["bytes"]) == (13, on_disk)

    code, out, _ = await cli(
        "cache", "purge", "--upstream-prefix", origin.base_url + "/master/v1/", env=env
    )
    assert code == 0 and out.startswith("removed 4 objects")
    code, out, _ = await cli("cache", "stats", env=env)
    assert json.loads(out)["entries"] == 9

    origin.clear()
    code, out, _ = await cli("cache", "warm", origin.base_url + "/master/master.m3u8", env=env)
    assert "4 fetched" in out and "9 already cached" in out
    assert sorted(media_files(origin)) == [f"/master/v1/seg_00{i}.ts" for i in range(4)]


async def test_admin_api_needs_its_token_and_warms_purges_and_reports(make_gateway, origin):
    closed = await make_gateway()
    gw = await make_gateway(admin_token="admin-token")
    async with aiohttp.ClientSession() as session:
        async with session.get(closed.base_url + "/admin/cache") as response:
            assert response.status == 404
        async with session.get(gw.base_url + "/admin/cache") as response:
            assert response.status == 403
        async with session.post(
            gw.base_url + "/admin/cache/warm",
            json={"url": origin.base_url + "/ts/index.m3u8"},
            headers=ADMIN,
        ) as response:
            report = await response.json()
        assert report["fetched"] == 4 and report["failed"] == 0
        async with session.get(gw.mint(origin.base_url + "/ts/seg_002.ts")) as response:
            assert response.headers["X-Cache"] == "HIT"
        async with session.post(gw.base_url + "/admin/cache/purge", headers=ADMIN) as response:
            assert (await response.json())["removed"] == 4
        async with session.get(gw.base_url + "/admin/cache", headers=ADMIN) as response:
            assert (await response.json())["entries"] == 0
        async with session.get(gw.mint(origin.base_url + "/ts/seg_002.ts")) as response:
            assert response.headers["X-Cache"] == "MISS"
