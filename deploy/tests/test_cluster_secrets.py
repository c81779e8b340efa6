"""The launcher's Redis requires a password, which reaches the workers only through REDIS_URL.

Whoever reaches the message queue's Redis can publish into it, that is emit into any room:
the private redis-server the launcher starts refuses clients without the password, the
password is not on any command line and is redacted from the state file.
"""

from __future__ import annotations

import os
import stat

import psutil
import pytest
import redis

from testkit.clients import ChatClient, register

pytestmark = pytest.mark.e2e


def test_the_clusters_redis_refuses_clients_without_the_password(shared_cluster):
    port, password = shared_cluster.redis.port, shared_cluster.redis.password
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="a guess").ping()
    assert redis.Redis(port=port, password=password).ping()
    assert shared_cluster.redis_url == f"redis://:{password}@127.0.0.1:{port}/0"
    assert len(password) >= 32

    # Not on the command line (every local user can read that), and not in the state file.
    cmdline = psutil.Process(shared_cluster.redis.pid).cmdline()
    assert not any(password in arg for arg in cmdline)
    assert password not in (shared_cluster.run_dir / "cluster.json").read_text()
    config = shared_cluster.redis.config
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600

    # And the workers, given it in REDIS_URL, work through it: fan-out across workers.
    _, token_a = register(shared_cluster.workers[0].url)
    _, token_b = register(shared_cluster.workers[1].url)
    a = ChatClient(shared_cluster.workers[0].url, token_a)
    b = ChatClient(shared_cluster.workers[1].url, token_b)
    try:
        assert a.join("general")["ok"] and b.join("general")["ok"]
        sent = a.send("general", "through the password-protected queue")["message"]
        assert b.wait_for("message", lambda m: m["id"] == sent["id"])["text"] == sent["text"]
    finally:
        a.close()
        b.close()
