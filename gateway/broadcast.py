"""A value that many tasks wait for, each through a future of its own: a flight's response
head, a file's loaded index, a page's extraction.

`await asyncio.shield(shared_future)` would do the same, but shield wakes a waiter two event
loop iterations after the value is set (one to copy the result to its outer future, one to
resume the task). A flight's fill keeps receiving upstream chunks in those iterations, so a
cold miss's first byte waited behind two of them. Here a waiter resumes in the very next
iteration, and one waiter's cancellation still cannot cancel the value for the others. An
error nobody waits for is simply dropped (a future would warn that it was never retrieved).
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Broadcast(Generic[T]):
    __slots__ = ("_error", "_result", "_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._result: T | None = None
        self._error: BaseException | None = None
        self._waiters: list[asyncio.Future[T]] = []

    def done(self) -> bool:
        return self._set

    def set_result(self, value: T) -> None:
        self._settle(value, None)

    def set_exception(self, error: BaseException) -> None:
        self._settle(None, error)

    def _settle(self, value: T | None, error: BaseException | None) -> None:
        if self._set:
            raise asyncio.InvalidStateError("the value is already set")
        self._set, self._result, self._error = True, value, error
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.done():
                continue  # its task was cancelled
            if error is None:
                waiter.set_result(value)  # type: ignore[arg-type]
            else:
                waiter.set_exception(error)

    async def wait(self) -> T:
        if not self._set:
            waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                return await waiter
            finally:
                if not self._set:
                    self._waiters.remove(waiter)
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]
