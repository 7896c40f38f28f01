"""Counts on the request path reach prometheus-client in batches: every second, before each
scrape, and when the gateway stops; at once where there is no event loop."""

import asyncio

from gateway.metrics import FLUSH_SECONDS, Metrics


def answered(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("gateway_fast_answers_total") or 0.0


def served(metrics: Metrics, state: str) -> float:
    value = metrics.registry.get_sample_value("gateway_served_bytes_total", {"state": state})
    return value or 0.0


async def test_counts_arrive_within_a_second_without_a_scrape():
    metrics = Metrics()
    for _ in range(3):
        metrics.count(metrics.fast_answers)
    metrics.count(metrics.served_bytes, "HIT", amount=1000)
    metrics.count(metrics.served_bytes, "MISS", amount=5)
    assert answered(metrics) == 0  # added up, not handed over yet
    await asyncio.sleep(FLUSH_SECONDS + 0.2)
    assert answered(metrics) == 3
    assert (served(metrics, "HIT"), served(metrics, "MISS")) == (1000, 5)


async def test_a_flush_hands_over_everything_counted_so_far_once():
    metrics = Metrics()
    metrics.count(metrics.fast_answers)
    metrics.flush()
    metrics.flush()
    assert answered(metrics) == 1
    await asyncio.sleep(FLUSH_SECONDS + 0.2)  # the timer set by the first count
    assert answered(metrics) == 1


def test_without_an_event_loop_a_count_is_handed_over_at_once():
    metrics = Metrics()
    metrics.count(metrics.fast_answers, amount=2)
    assert answered(metrics) == 2
