"""Password guessing and mass registration are throttled; each failure is one log line.

Against real worker processes: failed logins are limited per username and per client
address (429 with Retry-After, the password not even checked), registrations per address.
With a private Redis the counts are shared: failures on one worker count on the other.
The client address comes from X-Forwarded-For only when TRUSTED_PROXY_HOPS says a proxy
puts it there (as nginx does).
"""

from __future__ import annotations

import uuid

import pytest
import requests

from testkit.clients import DEFAULT_PASSWORD, register

pytestmark = pytest.mark.e2e

FAILURES_PER_USER = 5
FAILURES_PER_ADDRESS = 8
REGISTRATIONS = 3
LIMITS = {
    "RATE_LIMIT_LOGIN_FAILURES": str(FAILURES_PER_USER),
    "RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS": str(FAILURES_PER_ADDRESS),
    "RATE_LIMIT_REGISTRATIONS": str(REGISTRATIONS),
    "TRUSTED_PROXY_HOPS": "1",
}


@pytest.fixture(params=["memory", "memory-eventlet", "redis"])
def workers(request, start_worker, tmp_path) -> list:
    """One worker (memory storage; gevent or eventlet), or two sharing a private Redis and
    one database."""
    if request.param == "memory":
        return [start_worker(**LIMITS)]
    if request.param == "memory-eventlet":
        return [start_worker(**LIMITS, ASYNC_MODE="eventlet")]
    redis_server = request.getfixturevalue("redis_server")
    env = {**LIMITS, "REDIS_URL": redis_server.url, "DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}
    return [start_worker(**env), start_worker(**env)]


def login(url: str, username: str, password: str, address: str) -> requests.Response:
    return requests.post(
        f"{url}/api/tokens",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": address},
        timeout=10,
    )


def assert_throttled(r: requests.Response, window: int) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= window


def test_wrong_passwords_for_one_user_are_throttled(workers):
    urls = [w.url for w in workers]
    name, _ = register(urls[0])
    for i in range(FAILURES_PER_USER):  # alternating workers when there are two
        r = login(urls[i % len(urls)], name, f"wrong password {i}", address="10.0.0.1")
        assert r.status_code == 401, r.text
    for url in urls:
        # From another address too, and even with the right password: the name is locked.
        assert_throttled(login(url, name, "wrong again", address="10.0.0.2"), 300)
        assert_throttled(login(url, name, DEFAULT_PASSWORD, address="10.0.0.3"), 300)
    # Another user is not affected.
    other, _ = register(urls[-1])
    assert login(urls[0], other, DEFAULT_PASSWORD, address="10.0.0.1").status_code == 200

    logs = "".join(w.log_text() for w in workers)
    assert logs.count(f"login failed: wrong password for {name!r} from 10.0.0.1") == (
        FAILURES_PER_USER
    )
    assert logs.count(f"login refused: too many failures for {name!r}") == 2 * len(urls)
    assert "Traceback" not in logs
    assert "VerifyMismatchError" not in logs


def test_wrong_passwords_from_one_address_are_throttled(workers):
    urls = [w.url for w in workers]
    names = [register(urls[0])[0] for _ in range(3)]
    # Spread over names, each under its own limit: the address's count still runs out.
    for i in range(FAILURES_PER_ADDRESS):
        r = login(urls[i % len(urls)], names[i % 3], "wrong password", address="10.0.1.1")
        assert r.status_code == 401, r.text
    unknown = f"nobody{uuid.uuid4().hex[:8]}"
    for url in urls:
        assert_throttled(login(url, unknown, "anything at all", address="10.0.1.1"), 300)
        assert_throttled(login(url, names[0], DEFAULT_PASSWORD, address="10.0.1.1"), 300)
    # The same people from elsewhere log in (each name has fewer failures than its limit).
    assert login(urls[-1], names[0], DEFAULT_PASSWORD, address="10.0.1.2").status_code == 200


def test_registrations_from_one_address_are_throttled(workers):
    urls = [w.url for w in workers]

    def create(url: str, address: str) -> requests.Response:
        return requests.post(
            f"{url}/api/users",
            json={"username": f"u{uuid.uuid4().hex[:12]}", "password": DEFAULT_PASSWORD},
            headers={"X-Forwarded-For": address},
            timeout=10,
        )

    for i in range(REGISTRATIONS):
        assert create(urls[i % len(urls)], "10.0.2.1").status_code == 201
    for url in urls:
        assert_throttled(create(url, "10.0.2.1"), 3600)
    assert create(urls[0], "10.0.2.2").status_code == 201


def test_without_trusted_proxies_the_forwarded_address_is_ignored(start_worker):
    worker = start_worker(**{**LIMITS, "TRUSTED_PROXY_HOPS": "0"})
    name, _ = register(worker.url)
    for i in range(FAILURES_PER_ADDRESS):
        # A client reached directly cannot spread its guesses over made-up addresses.
        forged = f"10.9.{i}.1"
        r = login(worker.url, f"{name[:20]}{i}", "wrong password", address=forged)
        assert r.status_code == 401
    assert_throttled(login(worker.url, name, DEFAULT_PASSWORD, address="10.9.99.1"), 300)
    assert "from 127.0.0.1" in worker.log_text()
