"""Shared state on a real redis-server: many callers at once wait for a connection, never fail."""

import threading

from chat.cluster.shared_state import REDIS_POOL_SIZE, RedisState, StateUnavailable


def test_more_simultaneous_callers_than_connections_all_get_through(redis_server):
    # A thousand clients disconnecting at once is this many presence calls at once; a pool
    # that refused the surplus made every worker think Redis was down.
    state = RedisState(redis_server.url)
    callers = REDIS_POOL_SIZE * 4
    start = threading.Barrier(callers)
    failures: list[Exception] = []

    def call(i: int) -> None:
        start.wait(timeout=30)
        try:
            state.add("chat:test:crowd", f"member-{i}", ttl=60)
        except StateUnavailable as exc:
            failures.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(state.members("chat:test:crowd")) == callers
    assert state.ping()


def test_live_counts_count_each_keys_live_members_in_one_call(redis_server):
    from chat.cluster.shared_state import MemoryState

    for state in (RedisState(redis_server.url), MemoryState()):
        state.add("chat:test:on", "a", ttl=60)
        state.add("chat:test:expired", "b", ttl=-1)
        state.add("chat:test:left", "c", ttl=60)
        state.remove("chat:test:left", "c")
        keys = ["chat:test:on", "chat:test:expired", "chat:test:left", "chat:test:never"]
        state.add("chat:test:on", "d", ttl=60)
        assert state.live_counts(keys) == {
            "chat:test:on": 2,
            "chat:test:expired": 0,
            "chat:test:left": 0,
            "chat:test:never": 0,
        }
        assert state.live_counts([]) == {}
