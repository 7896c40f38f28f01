"""Single-flight across the worker processes of one node, through Redis.

Within a process, flights already coalesce. Across workers, the first to miss takes a Redis
lock for the object (SET NX with an expiry it keeps extending, and a fencing token) and
publishes, once upstream answered, the response head and the path of its growing temp file.
The other workers stream that file from the shared disk as it grows (`RemoteFill`), exactly
like local waiters do, and learn that it is complete when the lock is gone and the index has
the entry. A leader that dies stops extending its lock; once it expires, a follower that has
not sent anything yet takes over, and one that has cuts its clients short so they retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from gateway.cache.entry import Entry
from gateway.cache.fill import READ_CHUNK
from gateway.cache.redis_connect import connect
from gateway.errors import GatewayError, UpstreamError

log = logging.getLogger("gateway.cache")

LOCK_SECONDS = 10.0
_POLL_SECONDS = 0.01

# Delete the lock only if it is still ours (a fencing token), so an expired leader cannot
# release a successor's lock.
_RELEASE = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['token'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# Take the lock unless the object is already in the index (KEYS[2], when checked): one round
# trip, and exact, since a leader commits before it lets go of its lock. {2, entry}:
# committed (its index entry), 1: taken, 0: another worker leads.
_CLAIM = """
if #KEYS > 1 then
  local entry = redis.call('HGET', KEYS[2], ARGV[1])
  if entry then
    return {2, entry}
  end
end
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 0
"""
_EXTEND = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['token'] == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return nil
"""


@dataclass(slots=True)
class Claim:
    key: str
    token: str
    value: dict[str, Any]
    keeper: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class Committed:
    """What `FlightLocks.claim` returns when the index already holds the object."""

    entry: Entry


class FlightLocks:
    def __init__(self, url: str, *, prefix: str, node: str, entries_key: str | None = None) -> None:
        """`entries_key`: the index's hash of committed objects (same Redis, same node tag),
        checked by each claim."""
        self._redis = connect(url)
        self._prefix = f"{prefix}:{{{node}}}:flight:"
        self._entries_key = entries_key
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._extend = self._redis.register_script(_EXTEND)

    @property
    def checks_index(self) -> bool:
        """Whether a claim also finds objects already committed (else look them up)."""
        return self._entries_key is not None

    async def close(self) -> None:
        await self._redis.aclose()

    async def claim(self, name: str) -> Claim | Committed | None:
        """Lead the fill of `name` (also when Redis is away), or None if another worker
        leads it, or `Committed` with its entry if the index checked (`checks_index`)
        already holds it."""
        token = secrets.token_hex(8)
        value = {"token": token, "pid": os.getpid()}
        key = self._prefix + name
        keys = [key] if self._entries_key is None else [key, self._entries_key]
        try:
            outcome = await self._claim(
                keys=keys, args=[name, json.dumps(value), _ms(LOCK_SECONDS)]
            )
        except RedisError:
            return Claim(key, token, value)  # no coordination possible: lead alone
        if isinstance(outcome, list):
            return Committed(Entry.from_json(outcome[1]))
        if not outcome:
            return None
        claim = Claim(key, token, value)
        claim.keeper = asyncio.create_task(self._keep(claim))
        return claim

    async def publish(self, claim: Claim, **fields: object) -> None:
        claim.value.update(fields)
        with contextlib.suppress(RedisError):
            await self._extend(
                keys=[claim.key], args=[claim.token, json.dumps(claim.value), _ms(LOCK_SECONDS)]
            )

    async def release(self, claim: Claim) -> None:
        if claim.keeper is not None:
            claim.keeper.cancel()
        with contextlib.suppress(RedisError):
            await self._release(keys=[claim.key], args=[claim.token])

    async def peek(self, name: str) -> dict[str, Any] | None:
        try:
            raw = await self._redis.get(self._prefix + name)
        except RedisError:
            return None
        return json.loads(raw) if raw else None

    async def _keep(self, claim: Claim) -> None:
        while True:
            await asyncio.sleep(LOCK_SECONDS / 3)
            with contextlib.suppress(RedisError):
                await self._extend(
                    keys=[claim.key],
                    args=[claim.token, json.dumps(claim.value), _ms(LOCK_SECONDS)],
                )


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class RemoteFill:
    """Another worker's growing temp file, read like a local `Fill`.

    `settle` is called once the leader's lock is gone and must return the committed size
    (None if the fill failed).
    """

    on_disk = False  # this worker does not admit it: the leader does

    def __init__(self, path: Path, settle: Any, readers: int = 0) -> None:
        self.temp = path
        self.written = 0
        self.done = False
        self.error: GatewayError | None = None
        self._readers = readers
        self._settle = settle
        self._changed = asyncio.Event()
        self._fd = os.open(path, os.O_RDONLY)
        self._expected: int | None = None

    def attach(self) -> None:
        self._readers += 1

    def detach(self) -> None:
        self._readers -= 1
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self.done and self._readers <= 0 and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    async def follow(self, lock_alive: Any) -> None:
        """Track the file until the leader is done; runs as the flight's task."""
        try:
            while True:
                size = os.fstat(self._fd).st_size
                if size > self.written:
                    self.written = size
                    self._wake()
                if self._expected is not None and self.written >= self._expected:
                    break
                if not await lock_alive():
                    self._expected = await self._settle()
                    if self._expected is None:
                        raise UpstreamError("the worker filling this object failed")
                    continue
                await asyncio.sleep(_POLL_SECONDS)
            self.done = True
        except GatewayError as exc:
            self.done, self.error = True, exc
        finally:
            self.done = True
            self._wake()
            self._maybe_close()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self) -> None:
        while not self.done:
            await self._changed.wait()

    async def read_from(self, offset: int = 0) -> Any:
        while True:
            if offset < self.written:
                data = os.pread(self._fd, min(READ_CHUNK, self.written - offset), offset)
                if not data:
                    raise UpstreamError("shared fill vanished")
                offset += len(data)
                yield data
            elif self.done:
                if self.error is not None:
                    raise self.error
                return
            else:
                await self._changed.wait()

    def finish(self, error: GatewayError | None = None) -> None:
        self.done, self.error = True, error
        self._wake()
        self._maybe_close()

    def discard_temp(self) -> None:
        """Not ours to delete: the leader owns the temp file."""
