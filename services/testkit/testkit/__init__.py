"""Test and tooling support shared by every suite: real processes on free loopback ports.

- processes: the one process library: redis-server (single, Redis Cluster), chat workers,
  the Node peer, PostgreSQL; free ports, readiness waits, stop by PID, logs, psutil figures;
- cluster: the local cluster launcher (`python -m testkit.cluster`, `make cluster-up`): N
  workers behind nginx, on processes from `processes`;
- clients, sioclient, rawsocket: Socket.IO and raw Engine.IO/WebSocket clients for tests.

Nothing here fakes a component: a RedisServer is a real redis-server, a ChatWorker is the
real `python -m chat` process, a PostgresDatabase is a real database on a real server.
Installed into the venv by `make deps` (`pip install --no-deps -e services/testkit`).
"""
