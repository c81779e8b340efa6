"""/healthz tells the load balancer and the operator when a worker has lost Redis."""

from __future__ import annotations

import time

import requests

from testkit.processes import wait_for as wait_until


def test_healthz_is_503_naming_redis_when_redis_is_unreachable_and_recovers(start_cluster):
    cluster = start_cluster(workers=2)
    for worker in cluster.workers:
        assert worker.healthz().status_code == 200

    cluster.redis.stop()  # the cluster's private redis-server, never the machine's

    for worker in cluster.workers:
        # (a Response is falsy when its status is an error, so wait for the JSON body)
        body = wait_until(
            lambda w=worker: (r := w.healthz()).status_code == 503 and r.json(),
            15,
            f"{worker.node_id} to report 503",
        )
        assert body["ok"] is False
        assert body["node"] == worker.node_id
        assert body["checks"]["redis"]["ok"] is False
        assert body["checks"]["redis"]["error"]  # the exception's name, e.g. ConnectionError
        assert body["checks"]["database"] == {"ok": True}
    # nginx passes the verdict on (a 503 is an answer, not a connection failure).
    assert requests.get(cluster.url + "/healthz", timeout=10).status_code == 503

    # Redis back (empty, same port): every worker reconnects, hears its heartbeat again, and
    # is healthy without a restart.
    cluster.redis.start()
    cluster.redis.wait_ready()
    restarted = time.monotonic()

    def heard_since_restart(worker) -> bool:
        r = worker.healthz()
        heard = r.json()["checks"]["message_queue"]["heard_own_heartbeat_seconds_ago"]
        return r.status_code == 200 and heard is not None and heard < time.monotonic() - restarted

    for worker in cluster.workers:
        wait_until(lambda w=worker: heard_since_restart(w), 30, f"{worker.node_id} to recover")
