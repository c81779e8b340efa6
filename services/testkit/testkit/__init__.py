"""Test support shared by every test suite: real processes on free loopback ports.

Nothing here fakes a component: a RedisServer is a real redis-server, a ChatWorker is the
real `python -m chat` process, a PostgresDatabase is a real database on a real server.
"""
