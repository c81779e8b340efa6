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


def test_refresh_names_the_sets_that_had_lost_entries_and_stamps_follow_changes(redis_server):
    state = RedisState(redis_server.url)
    state.add("chat:test:a", "x", ttl=60, stamp="chat:test:stamp-a")
    first = state.stamps(["chat:test:stamp-a", "chat:test:stamp-none"])
    assert first[0] is not None and first[1] is None
    state.add("chat:test:b", "y", ttl=60)
    # Nothing lost: nothing named. Then "a" loses its entry (as in a restart) and is named.
    assert state.refresh({"chat:test:a": ["x"], "chat:test:b": ["y"]}, ttl=60) == []
    state.redis.delete("chat:test:a")
    assert state.refresh({"chat:test:a": ["x"], "chat:test:b": ["y"]}, ttl=60) == ["chat:test:a"]
    state.remove("chat:test:a", "x", stamp="chat:test:stamp-a")
    assert state.stamps(["chat:test:stamp-a"]) != first[:1]
    assert state.members_of(["chat:test:a", "chat:test:b"]) == {
        "chat:test:a": [],
        "chat:test:b": ["y"],
    }
    # The epoch: the first value set stays until the state is emptied.
    assert state.ensure("chat:test:epoch", "one") == "one"
    assert state.ensure("chat:test:epoch", "two") == "one"
    state.redis.flushdb()
    assert state.ensure("chat:test:epoch", "two") == "two"
