"""docker-compose.yml, the Dockerfile and nginx/ agree with each other and with the settings.

No container engine runs here, so the compose file is validated by reading it: every
service, port, volume and variable it names must mean what the gateway and nginx expect.
"""

import re
from pathlib import Path

import yaml

from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SITE = (ROOT / "nginx" / "hls-gateway.conf").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def gateway_env() -> dict[str, str]:
    return {k: str(v) for k, v in COMPOSE["services"]["gateway"]["environment"].items()}


def test_compose_has_redis_gateway_and_nginx():
    assert set(COMPOSE["services"]) == {"redis", "gateway", "nginx"}


def test_every_gateway_variable_is_a_real_setting():
    fields = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}
    assert set(gateway_env()) <= fields, set(gateway_env()) - fields


def test_the_gateway_uses_the_compose_redis_and_more_than_one_worker():
    env = gateway_env()
    assert env["GATEWAY_REDIS_URL"].startswith("redis://redis:")
    assert int(env["GATEWAY_WORKERS"]) > 1  # which the gateway only allows with Redis


def test_nginx_reaches_the_gateway_where_it_listens():
    env = gateway_env()
    assert COMPOSE["services"]["nginx"]["network_mode"] == "service:gateway"
    servers = re.findall(r"(?m)^\s+server unix:(\S+) ", SITE)
    assert servers == [env["GATEWAY_UNIX_SOCKET"]]
    # The socket's directory is one volume, written by the gateway's user, seen by nginx.
    directory = env["GATEWAY_UNIX_SOCKET"].rsplit("/", 1)[0]
    for service in ("gateway", "nginx"):
        assert f"sockets:{directory}" in COMPOSE["services"][service]["volumes"]
    assert f"chown gateway /var/cache/hls-gateway {directory}" in DOCKERFILE
    assert f"EXPOSE {env['GATEWAY_PORT']}" in DOCKERFILE
    listen = re.search(r"(?m)^\s+listen (\d+);", SITE).group(1)
    assert f"8080:{listen}" in COMPOSE["services"]["gateway"]["ports"]


def test_hits_sent_by_nginx_come_from_the_volume_the_gateway_writes():
    env = gateway_env()
    cache_dir = env["GATEWAY_CACHE_DIR"]
    gateway_mount = f"cache:{cache_dir}"
    assert gateway_mount in COMPOSE["services"]["gateway"]["volumes"]
    assert f"{gateway_mount}:ro" in COMPOSE["services"]["nginx"]["volumes"]
    internal = re.search(r"location (?:\^~ )?(/_cache/) \{\s*internal;\s*alias ([^;]+);", SITE)
    assert internal, "nginx needs an internal location for X-Accel-Redirect"
    assert env["GATEWAY_ACCEL_REDIRECT_PREFIX"] == internal.group(1)
    assert internal.group(2).rstrip("/") == cache_dir.rstrip("/")
    assert f"GATEWAY_CACHE_DIR={cache_dir}" in DOCKERFILE.replace(" ", "")


def test_nginx_config_files_are_mounted_where_nginx_reads_them():
    mounts = COMPOSE["services"]["nginx"]["volumes"]
    assert "./nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in mounts
    assert "./nginx/hls-gateway.conf:/etc/nginx/conf.d/hls-gateway.conf:ro" in mounts
    assert (
        "include /etc/nginx/conf.d/hls-gateway.conf;" in (ROOT / "nginx" / "nginx.conf").read_text()
    )


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck():
    assert re.search(r"(?m)^USER (?!root)\w+", DOCKERFILE)
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
