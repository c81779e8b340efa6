"""Sessions end: log out (this token), log out everywhere, a password change, expiry.

Against real worker processes (`python -m chat`): an ended token is refused on REST and on
connect, and a socket that holds it is told `session_ended` and disconnected within 5 s,
on every worker of a cluster (two workers, a private Redis, one database).
"""

from __future__ import annotations

import time

import pytest
import requests
import socketio

from testkit.clients import DEFAULT_PASSWORD, ChatClient, register

pytestmark = pytest.mark.e2e

# The contract: an open socket holding an ended token is cut off within this long.
CUT_OFF_SECONDS = 5.0


def login(url: str, username: str, password: str = DEFAULT_PASSWORD) -> requests.Response:
    return requests.post(
        f"{url}/api/tokens", json={"username": username, "password": password}, timeout=10
    )


def token_of(url: str, username: str, password: str = DEFAULT_PASSWORD) -> str:
    r = login(url, username, password)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rooms_status(url: str, token: str) -> requests.Response:
    return requests.get(f"{url}/api/rooms", headers=bearer(token), timeout=10)


def assert_refused_on_connect(url: str, token: str) -> None:
    # python-socketio's client names the namespace whose CONNECT the server refused.
    with pytest.raises(
        socketio.exceptions.ConnectionError, match="^One or more namespaces failed to connect: /$"
    ):
        ChatClient(url, token)


def wait_cut_off(client: ChatClient, since: float) -> float:
    """Seconds from `since` until the client got `session_ended` and was disconnected."""
    ended = client.wait_for("session_ended", timeout=CUT_OFF_SECONDS + 10)
    assert ended == {"code": "unauthorized", "message": "session ended: log in again"}
    deadline = time.monotonic() + 10
    while client.sio.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not client.sio.connected
    return time.monotonic() - since


@pytest.mark.parametrize("async_mode", ["gevent", "eventlet"])
def test_log_out_ends_this_token_and_no_other(start_worker, async_mode):
    worker = start_worker(ASYNC_MODE=async_mode)
    name, token_a = register(worker.url)
    token_b = token_of(worker.url, name)
    socket_a, socket_b = ChatClient(worker.url, token_a), ChatClient(worker.url, token_b)
    try:
        assert socket_a.join("general")["ok"] is True

        started = time.monotonic()
        r = requests.delete(f"{worker.url}/api/tokens/current", headers=bearer(token_a), timeout=10)
        assert (r.status_code, r.text) == (204, "")

        r = rooms_status(worker.url, token_a)
        assert r.status_code == 401
        assert r.json()["error"] == {
            "code": "unauthorized",
            "message": "session ended: log in again",
        }
        assert_refused_on_connect(worker.url, token_a)
        elapsed = wait_cut_off(socket_a, started)
        assert elapsed < CUT_OFF_SECONDS, elapsed
        print(f"socket cut off {elapsed:.2f} s after the logout")

        # The other session of the same user carries on.
        assert rooms_status(worker.url, token_b).status_code == 200
        assert socket_b.join("general")["ok"] is True
        assert socket_b.sio.connected
        # Logging out twice is no error; the token stays refused.
        r = requests.delete(f"{worker.url}/api/tokens/current", headers=bearer(token_a), timeout=10)
        assert r.status_code == 401
    finally:
        socket_a.close()
        socket_b.close()


def test_log_out_everywhere_cuts_off_sockets_on_every_worker(
    start_worker, redis_server, database_url
):
    env = {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url}
    first = start_worker(**env)
    second = start_worker(**env)
    name, token_1 = register(first.url)
    token_2 = token_of(second.url, name)
    other_name, other_token = register(first.url)
    on_first, on_second = ChatClient(first.url, token_1), ChatClient(second.url, token_2)
    bystander = ChatClient(second.url, other_token)
    try:
        assert on_first.wait_for("session")["node"] == first.node_id
        assert on_second.wait_for("session")["node"] == second.node_id

        started = time.monotonic()
        r = requests.delete(f"{first.url}/api/tokens", headers=bearer(token_1), timeout=10)
        assert r.status_code == 204
        for worker, token in [(first, token_1), (second, token_2), (first, token_2)]:
            assert rooms_status(worker.url, token).status_code == 401
        cut = [wait_cut_off(client, started) for client in (on_first, on_second)]
        assert max(cut) < CUT_OFF_SECONDS, cut
        print(f"sockets cut off after {cut[0]:.2f} s (same worker), {cut[1]:.2f} s (other)")

        # Other users are untouched, and logging in again gives a working session at once.
        assert bystander.join("general")["ok"] is True
        fresh = token_of(second.url, name)
        assert rooms_status(first.url, fresh).status_code == 200
        again = ChatClient(first.url, fresh)
        try:
            assert again.join("general")["ok"] is True
        finally:
            again.close()
    finally:
        for client in (on_first, on_second, bystander):
            client.close()


def test_log_out_on_one_worker_cuts_off_every_tab_of_that_token_on_another(
    start_worker, redis_server, database_url
):
    env = {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url}
    first = start_worker(**env)
    second = start_worker(**env)
    name, token = register(first.url)
    other_token = token_of(first.url, name)
    tabs = [ChatClient(second.url, token) for _ in range(3)]  # one token, three sockets
    phone = ChatClient(second.url, other_token)
    try:
        for client in [*tabs, phone]:
            assert client.wait_for("session")["node"] == second.node_id
        # Past the second worker's first check of these tokens (at most 2 s, the default
        # interval), so the logout is found among the changes since that check.
        time.sleep(3)

        started = time.monotonic()
        r = requests.delete(f"{first.url}/api/tokens/current", headers=bearer(token), timeout=10)
        assert r.status_code == 204
        cut = [wait_cut_off(tab, started) for tab in tabs]
        assert max(cut) < CUT_OFF_SECONDS, cut
        print(f"three tabs on the other worker cut off after {max(cut):.2f} s")

        # The same user's other token, on the same worker, carries on.
        assert phone.sio.connected
        assert phone.join("general")["ok"] is True
    finally:
        for client in (*tabs, phone):
            client.close()


def test_a_password_change_ends_every_session(start_worker):
    worker = start_worker()
    name, token = register(worker.url)
    socket = ChatClient(worker.url, token)
    url = f"{worker.url}/api/users/me/password"
    try:
        wrong = {"current_password": "not the password", "new_password": "a new password"}
        r = requests.put(url, json=wrong, headers=bearer(token), timeout=10)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"
        short = {"current_password": DEFAULT_PASSWORD, "new_password": "short"}
        assert requests.put(url, json=short, headers=bearer(token), timeout=10).status_code == 400
        assert rooms_status(worker.url, token).status_code == 200  # refusals change nothing

        started = time.monotonic()
        change = {"current_password": DEFAULT_PASSWORD, "new_password": "a new password"}
        r = requests.put(url, json=change, headers=bearer(token), timeout=10)
        assert (r.status_code, r.text) == (204, "")
        assert rooms_status(worker.url, token).status_code == 401
        assert_refused_on_connect(worker.url, token)
        assert wait_cut_off(socket, started) < CUT_OFF_SECONDS
        assert login(worker.url, name).status_code == 401
        assert (
            rooms_status(worker.url, token_of(worker.url, name, "a new password")).status_code
            == 200
        )
    finally:
        socket.close()


def test_an_open_socket_is_cut_off_when_its_token_expires(start_worker):
    ttl = 3
    worker = start_worker(TOKEN_TTL_SECONDS=str(ttl))
    _, token = register(worker.url)
    issued = time.monotonic()
    socket = ChatClient(worker.url, token)
    try:
        assert socket.join("general")["ok"] is True
        lived = wait_cut_off(socket, issued)
        # Not before the token expired, and within the cut-off bound after it did.
        assert ttl - 0.5 <= lived < ttl + CUT_OFF_SECONDS, lived
        assert rooms_status(worker.url, token).status_code == 401
        assert_refused_on_connect(worker.url, token)
    finally:
        socket.close()
