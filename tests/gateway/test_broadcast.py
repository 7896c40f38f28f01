"""One value, many waiters: each resumes with it, and none can cancel it for the others."""

import asyncio

import pytest

from gateway.broadcast import Broadcast


async def test_every_waiter_gets_the_value_and_a_late_one_too():
    value: Broadcast[str] = Broadcast()
    waiters = [asyncio.create_task(value.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    value.set_result("head")
    assert await asyncio.gather(*waiters) == ["head"] * 3
    assert await value.wait() == "head"


async def test_a_cancelled_waiter_leaves_the_value_to_the_others():
    value: Broadcast[int] = Broadcast()
    leaving, staying = asyncio.create_task(value.wait()), asyncio.create_task(value.wait())
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    assert leaving.cancelled() and not value.done()
    value.set_result(7)
    assert await staying == 7


async def test_an_error_reaches_every_waiter_and_is_set_once():
    value: Broadcast[int] = Broadcast()
    waiters = [asyncio.create_task(value.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    value.set_exception(LookupError("upstream answered 404"))
    for outcome in await asyncio.gather(*waiters, return_exceptions=True):
        assert isinstance(outcome, LookupError)
    with pytest.raises(LookupError):
        await value.wait()
    with pytest.raises(asyncio.InvalidStateError):
        value.set_result(1)


async def test_a_waiter_resumes_in_the_next_loop_iteration():
    # The reason it exists: shield takes two iterations, so a fill ran a step ahead of the
    # clients it was meant to serve first.
    value: Broadcast[str] = Broadcast()
    order: list[str] = []

    async def client() -> None:
        await value.wait()
        order.append("client")

    async def fill() -> None:
        value.set_result("head")
        await asyncio.sleep(0)
        order.append("fill")

    waiting = asyncio.create_task(client())
    await asyncio.sleep(0)
    await asyncio.gather(fill(), waiting)
    assert order == ["client", "fill"]
