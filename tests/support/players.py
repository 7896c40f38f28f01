"""Real players for the e2e tests: ffmpeg, VLC and hls.js / dash.js in headless Chromium.

Each is pointed at an HTTP URL and reports whether playback really happened, not just whether a
process exited. `.ci/install-players.sh` installs what they need; the `*_available` checks let
tests skip when it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from aiohttp import web

PAGE_DIR = Path(__file__).with_name("player_page")
CHROMIUM = Path("/usr/bin/chromium")
VLC_USER = "player"
_NODE_PACKAGES = ("hls.js", "dashjs", "playwright-core")
_PAGES = {"hls.js": "hls.html", "dash.js": "dash.html"}
# Headroom over the driver's own deadline, so the driver normally reports before being killed.
_DRIVER_GRACE = 15.0

# VLC exits 0 even when it could not open the input, so the log decides. These lines mean the
# stream could not be read at all or a part of it was refused.
_VLC_FATAL = (
    "Your input can't be opened",
    "VLC is unable to open the MRL",
)
# Errors VLC logs on any headless machine: optional control interfaces that need a desktop.
# Headless runs always log the interface ones; "buffer deadlock prevented" is VLC's decoder
# dropping a late buffer with the dummy audio output while playback carries on; it shows up
# now and then with separate audio renditions. Real failures still fail the run: the log
# must show a decoded picture and no HTTP error.
_VLC_BENIGN_ERROR = re.compile(
    r"\] (dbus|main) interface error:|\] main libvlc error: interface "
    r"|\] main decoder error: buffer deadlock prevented"
)
_VLC_ERROR_LINE = re.compile(r"^\[[0-9a-f]+\] [^\]]*? error: .*$", re.MULTILINE)
# The http access logs each response's status line at -vv, segments included; the adaptive demux
# otherwise skips a missing segment silently.
_VLC_HTTP_STATUS = re.compile(r"incoming response:\s*\n(HTTP/\S+ (\d{3})[^\r\n]*)")
_VLC_DECODED = "Received first picture"


@dataclass
class PlayerRun:
    ok: bool
    exit_code: int
    log: str
    errors: list[str] = field(default_factory=list)


@dataclass
class BrowserRun:
    ok: bool
    current_time: float
    errors: list[str]
    log: str
    advanced: float = 0.0  # seconds played since the first picture (live starts mid-stream)
    stalls: int = 0  # hls.js buffer-stalled errors seen


async def ffmpeg(*args: str, seconds: float = 120) -> tuple[bytes, bytes]:
    """`ffmpeg -nostdin -v error <args>`, which must succeed (else the test fails with the
    end of what it logged): its stdout and its stderr."""
    return await _run_tool("ffmpeg", "-nostdin", "-v", "error", *args, seconds=seconds)


async def ffprobe(*args: str, seconds: float = 120) -> bytes:
    """`ffprobe -v error <args>`, which must succeed: its stdout."""
    out, _ = await _run_tool("ffprobe", "-v", "error", *args, seconds=seconds)
    return out


async def _run_tool(*command: str, seconds: float) -> tuple[bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), seconds)
    assert process.returncode == 0, err.decode()[-2000:]
    return out, err


async def remux(url: str, out: Path) -> bytes:
    """What ffmpeg, as a player, receives from `url`, made comparable: every stream copied
    into one MPEG-TS file at `out`, whose bytes are returned."""
    await ffmpeg(
        "-y",
        "-i",
        url,
        "-map",
        "0",
        "-c",
        "copy",
        "-f",
        "mpegts",
        "-mpegts_flags",
        "+resend_headers",
        "-muxdelay",
        "0",
        str(out),
    )
    return await asyncio.to_thread(out.read_bytes)


def vlc_available() -> bool:
    if shutil.which("cvlc") is None:
        return False
    if os.geteuid() != 0:
        return True
    return shutil.which("runuser") is not None and _user_exists(VLC_USER)


def chromium_available() -> bool:
    return (
        CHROMIUM.is_file()
        and os.access(CHROMIUM, os.X_OK)
        and shutil.which("node") is not None
        and all((PAGE_DIR / "node_modules" / name).is_dir() for name in _NODE_PACKAGES)
    )


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# The timeouts below are part of the contract, not a cancel scope: a run that hits one still
# returns a report with the log so far, which a caller's asyncio.timeout would throw away.
async def play_with_vlc(url: str, *, timeout: float = 60) -> PlayerRun:  # noqa: ASYNC109
    """Play `url` to its end with VLC; ok when it decoded video and met no error on the way."""
    command = [
        "cvlc", "-I", "dummy", "--vout", "dummy", "--aout", "dummy", "--play-and-exit",
        "--no-video-title-show", "--no-dbus", "--ignore-config", "-vv", url,
    ]  # fmt: skip
    if os.geteuid() == 0:
        # VLC refuses to run as root.
        command = ["runuser", "-u", VLC_USER, "--", *command]
    exit_code, output, timed_out = await _run(command, limit=timeout, cwd=Path("/"))
    log = output.decode(errors="replace")

    errors: list[str] = []
    if timed_out:
        errors.append(f"timed out after {timeout}s")
    elif exit_code != 0:
        errors.append(f"exit code {exit_code}")
    errors += [marker for marker in _VLC_FATAL if marker in log]
    errors += [
        line for line in _VLC_ERROR_LINE.findall(log)
        if not _VLC_BENIGN_ERROR.search(line)
    ]  # fmt: skip
    errors += [
        f"HTTP {status}: {line}" for line, status in _VLC_HTTP_STATUS.findall(log)
        if int(status) >= 400
    ]  # fmt: skip
    if not errors and _VLC_DECODED not in log:
        errors.append("no video picture was decoded")
    return PlayerRun(ok=not errors, exit_code=exit_code, log=log, errors=errors)


async def play_in_browser(
    url: str,
    *,
    engine: Literal["hls.js", "dash.js"],
    seconds: float = 3.0,
    timeout: float = 60,  # noqa: ASYNC109
) -> BrowserRun:
    """Play `url` with hls.js or dash.js in headless Chromium until it has played `seconds`.

    The page is served from its own loopback origin, so every media request is cross-origin and
    succeeds only if the server under test sends CORS headers.
    """
    runner = web.AppRunner(_page_app(), access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    site = web.SockSite(runner, sock)
    try:
        await site.start()
        page_url = f"http://127.0.0.1:{port}/{_PAGES[engine]}?{urlencode({'src': url})}"
        command = ["node", str(PAGE_DIR / "drive.mjs"), page_url, str(seconds), str(timeout)]
        exit_code, output, timed_out = await _run(
            command, limit=timeout + _DRIVER_GRACE, cwd=PAGE_DIR
        )
    finally:
        await runner.cleanup()

    text = output.decode(errors="replace")
    report = _last_json_line(text)
    if report is None:
        reason = "timed out" if timed_out else f"exit code {exit_code}"
        return BrowserRun(
            ok=False, current_time=0.0, errors=[f"driver gave no report ({reason})"], log=text
        )
    errors = [str(error) for error in report.get("errors", [])]
    if timed_out:
        errors.append(f"driver killed after {timeout + _DRIVER_GRACE}s")
    return BrowserRun(
        ok=bool(report.get("ok")) and exit_code == 0 and not timed_out,
        current_time=float(report.get("currentTime") or 0.0),
        errors=errors,
        log="\n".join(str(line) for line in report.get("log", [])),
        advanced=float(report.get("advanced") or 0.0),
        stalls=int(report.get("stalls") or 0),
    )


def _page_app() -> web.Application:
    app = web.Application()
    app.router.add_static("/", PAGE_DIR, follow_symlinks=False)
    return app


def _last_json_line(text: str) -> dict[str, object] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                report = json.loads(line)
                if isinstance(report, dict):
                    return report
    return None


async def _run(
    command: list[str], *, limit: float, cwd: Path | None = None
) -> tuple[int, bytes, bool]:
    """Run `command` in its own process group; returns (exit code, stdout+stderr, timed out).

    Whatever happens (timeout, cancellation), nothing it started outlives this call, and the
    output read so far is kept: a player's log matters most when it hung.
    """
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
    )
    output = bytearray()

    async def pump() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(1 << 16):
            output.extend(chunk)

    reader = asyncio.create_task(pump())
    timed_out = False
    try:
        await asyncio.wait_for(process.wait(), limit)
    except TimeoutError:
        timed_out = True
        await _terminate(process)
    except BaseException:
        await _terminate(process)
        reader.cancel()
        raise
    # A straggler that inherited the pipe must not keep this call waiting for end of file.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(reader), 5)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    return (process.returncode if process.returncode is not None else -1), bytes(output), timed_out


async def _terminate(process: asyncio.subprocess.Process) -> None:
    # Playwright starts Chromium in a session of its own, so the group alone would miss it; the
    # tree is collected first, while the parent links still lead to it.
    tree = _descendants(process.pid)
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), 3)
    tree |= _descendants(process.pid)
    _signal_group(process.pid, signal.SIGKILL)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    await process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; fields resume after the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found
