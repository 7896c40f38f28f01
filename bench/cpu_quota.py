"""Hold a server to a fixed share of one core, so that its req/s measures its own cost per
request and not the load generator's.

With one wrk thread at its core's limit (a 1.1 MB hit costs wrk the same 137 reads of 8 KB
whichever server sent it), two servers that each have CPU to spare tie on req/s whatever
they spend per request. Given the same CFS quota, each answers as many requests as its own
CPU per request allows, and wrk has time to spare instead. The quota covers every thread of
the process and of its direct children (nginx's workers; Node's and libuv's helper
threads), and the kernel time of their system calls, so runtimes are held alike.

cgroup v1 (`/sys/fs/cgroup/cpu`) and v2 (`cpu.max`) are both handled; where neither can be
written (not root, no cpu controller), `quota_problem` says why and the caller skips.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench.common import alternate, children, wrk

ROOT = Path("/sys/fs/cgroup")
V1 = ROOT / "cpu"
# Half a core: under it the servers' hit rates (1,100 to 2,000 req/s of 1.1 MB) leave wrk about
# half of its core, and the other core's half is left for the kernel and the load generator.
HELD_CORES = 0.5
PERIOD_US = 20_000  # short periods, so that a throttled server stalls for at most 10 ms


@functools.cache
def _version() -> int:
    if (V1 / "cpu.cfs_quota_us").exists():
        return 1
    if (ROOT / "cgroup.controllers").exists():
        return 2
    return 0


def _group_root() -> Path:
    return V1 if _version() == 1 else ROOT


def _own_group(pid: int) -> Path:
    """The cpu cgroup `pid` is in now, as a directory."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (_version() == 1 and "cpu" in controllers.split(",")) or (
            _version() == 2 and controllers == ""
        ):
            return _group_root() / path.lstrip("/")
    return _group_root()


def _set_quota(group: Path, cores: float) -> None:
    quota = int(PERIOD_US * cores)
    if _version() == 1:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    else:
        (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")


def _move(pids: list[int], group: Path) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            (group / "cgroup.procs").write_text(str(pid))


def quota_problem() -> str | None:
    """Why a quota cannot be set here, or None when it can."""
    if _version() == 0:
        return "no cpu cgroup controller"
    if not os.access(_group_root(), os.W_OK):
        return f"{_group_root()} is not writable (run as root)"
    if _version() == 2 and "cpu" not in (ROOT / "cgroup.subtree_control").read_text().split():
        try:
            (ROOT / "cgroup.subtree_control").write_text("+cpu")
        except OSError as exc:
            return f"cannot enable the cpu controller: {exc}"
    return None


Runs = dict[str, list[dict[str, float]]]


def held_rounds(sides: dict[str, tuple[str, list[int]]], args: argparse.Namespace) -> Runs:
    """Each side's URL under wrk (the load benchmarks' options `args`), with the side's
    processes under one quota of `HELD_CORES` while it runs, alternated as `alternate` does;
    nothing (and one line saying why) where no quota can be set."""
    problem = quota_problem()
    if problem:
        print(f"SKIP servers held to {HELD_CORES:g} of a core: {problem}")
        return {}

    def held(url: str, pids: list[int]) -> Callable[[], dict[str, float]]:
        def measure() -> dict[str, float]:
            with cpu_quota(pids, HELD_CORES):
                return wrk(url, connections=args.connections, seconds=args.seconds,
                           server_pids=pids)  # fmt: skip

        return measure

    return alternate({name: held(url, pids) for name, (url, pids) in sides.items()}, args.rounds)


@contextlib.contextmanager
def cpu_quota(servers: Sequence[int], cores: float) -> Iterator[None]:
    """Run the body with the processes `servers` and their children held together to
    `cores` of CPU time (one quota for all: a front nginx and the gateway behind it share
    it), then put them back where they were."""
    pids = [tree_pid for pid in servers for tree_pid in (pid, *children(pid))]
    homes = {p: _own_group(p) for p in pids}
    group = _group_root() / f"hls-bench-{servers[0]}"
    group.mkdir(exist_ok=True)
    try:
        _set_quota(group, cores)
        _move(pids, group)
        yield
    finally:
        for p, home in homes.items():
            _move([p], home)
        # A thread that could not be moved back keeps the group; an error here would hide
        # the body's own.
        with contextlib.suppress(OSError):
            group.rmdir()
