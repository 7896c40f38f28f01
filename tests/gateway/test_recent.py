"""The hot path's bounded maps: the newest entries kept, and entries that lapse on time."""

from gateway.recent import LapsingMap, put_newest


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_put_newest_keeps_the_newest_within_the_limit():
    mapping: dict[str, int] = {}
    for n, key in enumerate("abcd"):
        put_newest(mapping, key, n, limit=3)
    assert mapping == {"b": 1, "c": 2, "d": 3}
    put_newest(mapping, "b", 9, limit=3)  # put again: now the newest
    put_newest(mapping, "e", 4, limit=3)
    assert list(mapping) == ["d", "b", "e"]


def test_an_entry_lapses_its_ttl_after_it_was_put_however_often_it_is_read():
    clock = Clock()
    hot: LapsingMap[str, str] = LapsingMap(10, ttl=2.0, clock=clock)
    hot["seg"] = "entry"
    clock.now += 1.9
    assert hot.get("seg") == "entry"  # reading does not extend it
    clock.now += 0.1
    assert hot.get("seg") is None
    assert len(hot) == 0  # the lapsed entry went at that lookup
    hot["seg"] = "again"
    clock.now += 1.0
    assert hot.get("seg") == "again"


def test_a_full_map_drops_its_oldest_entry():
    clock = Clock()
    hot: LapsingMap[int, int] = LapsingMap(3, ttl=60.0, clock=clock)
    for n in range(5):
        hot[n] = n * 10
    assert [hot.get(n) for n in range(5)] == [None, None, 20, 30, 40]
    assert len(hot) == 3


def test_discard_and_clear_forget_entries():
    hot: LapsingMap[str, int] = LapsingMap(3, ttl=60.0)
    hot["a"], hot["b"] = 1, 2
    hot.discard("a")
    hot.discard("missing")  # nothing to forget: no error
    assert (hot.get("a"), hot.get("b")) == (None, 2)
    hot.clear()
    assert len(hot) == 0 and hot.get("b") is None
