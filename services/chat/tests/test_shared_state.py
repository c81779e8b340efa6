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


def test_a_set_expires_by_itself_once_nobody_writes_it(redis_server):
    # No index of sets: a set nobody refreshes any more (its worker died, its room emptied)
    # carries its own expiry, past every entry's.
    state = RedisState(redis_server.url)
    state.add("chat:test:lonely", "x", ttl=10)
    state.refresh({"chat:test:lonely": ["x"]}, ttl=10)
    ttl = state.redis.ttl("chat:test:lonely")
    assert 10 < ttl <= 21
    assert state.redis.keys("chat:ttlsets*") == []


def test_the_same_state_works_on_a_redis_cluster_with_a_rooms_keys_in_one_slot(redis_cluster):
    from redis.crc import key_slot

    from chat.cluster.presence import Presence

    state = RedisState(redis_cluster.url)
    presence = Presence(state, "node-1", ttl=60)
    presence.connect("sid-1", "ann")
    for room in ("general", "random", "dev"):
        presence.enter("sid-1", room)
    assert presence.online("general") == ["ann"]
    # Keys in many slots (a script could not span them): counted all the same.
    presence.connect("sid-2", "bob")
    assert presence.outside("general", ["ann", "bob", "cid"]) == {"bob"}
    presence.heartbeat()
    assert {room for room, _ in presence.changes()} == {"general", "random", "dev"}
    # A room's set and its stamp share a slot (hash tag); the rooms spread over the nodes.
    keys = ["chat:presence:{general}", "chat:presence-stamp:{general}"]
    assert [state.redis.exists(k) for k in keys] == [1, 1]
    assert len({key_slot(k.encode()) for k in keys}) == 1
    owners = {
        redis_cluster.owner(key_slot(f"{{{r}}}".encode())).port
        for r in ("general", "random", "dev")
    }
    assert len(owners) >= 2


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


def test_live_counts_still_count_after_redis_lost_its_scripts(redis_server):
    state = RedisState(redis_server.url)
    state.add("chat:test:on", "a", ttl=60)
    keys = ["chat:test:on", "chat:test:a", "chat:test:b"]
    assert state.live_counts(keys) == {"chat:test:on": 1, "chat:test:a": 0, "chat:test:b": 0}
    state.redis.config_resetstat()
    assert state.live_counts(keys) == {"chat:test:on": 1, "chat:test:a": 0, "chat:test:b": 0}
    # One script call for all the keys (its ZCOUNTs run inside it), not a command per key.
    stats = state.redis.info("commandstats")
    calls = {k: v["calls"] for k, v in stats.items() if k.startswith(("cmdstat_eval", "cmdstat_z"))}
    assert calls == {"cmdstat_evalsha": 1, "cmdstat_zcount": 3}
    state.redis.script_flush()  # as a restarted Redis: the script's SHA is unknown
    assert state.live_counts(["chat:test:on", "chat:test:never"]) == {
        "chat:test:on": 1,
        "chat:test:never": 0,
    }


def test_live_counts_fall_back_to_a_pipeline_where_scripts_are_refused(redis_server):
    admin = RedisState(redis_server.url).redis
    admin.acl_setuser(
        "noscripts",
        enabled=True,
        passwords=["+pw"],
        keys=["chat:*"],
        commands=["+@all", "-@scripting"],
    )
    state = RedisState(f"redis://noscripts:pw@127.0.0.1:{redis_server.port}/0")
    state.add("chat:test:on", "a", ttl=60)
    keys = ["chat:test:on", "chat:test:never"]
    assert state.live_counts(keys) == {"chat:test:on": 1, "chat:test:never": 0}
    assert state.live_counts(keys) == {"chat:test:on": 1, "chat:test:never": 0}  # no retry
