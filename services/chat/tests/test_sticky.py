"""Engine.IO session ids carry the worker's SID_TAG, so nginx can route without a cookie.

Through nginx with the official Node client: deploy/tests/test_cluster_cookieless.py.
"""

from __future__ import annotations

import json

import engineio
import pytest
import requests
from engineio_fakes import wsgi_request

from chat.config import Config, ConfigError
from chat.transport.sticky import SEPARATOR, tag_session_ids


def polling_handshake(server: engineio.Server) -> dict:
    """An Engine.IO v4 polling handshake answered by `server`: the OPEN packet's data."""
    environ = wsgi_request()
    status: list[str] = []
    body = b"".join(server.handle_request(environ, lambda s, h: status.append(s)))
    assert status == ["200 OK"], body
    assert body[:1] == b"0", body  # OPEN
    return json.loads(body[1:])


def test_upstream_engineio_takes_the_session_id_from_generate_id():
    # When this fails, python-engineio issues session ids some other way: SID_TAG would
    # silently stop tagging them and cookie-less clients would lose their worker again.
    server = engineio.Server(async_mode="threading")
    server.generate_id = lambda: "chosen-id"
    assert polling_handshake(server)["sid"] == "chosen-id"


def test_a_tagged_server_issues_ids_that_start_with_its_tag():
    server = engineio.Server(async_mode="threading")
    tag_session_ids(server, "worker-7")
    sids = {polling_handshake(server)["sid"] for _ in range(3)}
    assert len(sids) == 3
    for sid in sids:
        tag, _, rest = sid.partition(SEPARATOR)
        assert tag == "worker-7"
        assert len(rest) >= 16 and SEPARATOR not in rest


@pytest.mark.parametrize("value", ["w.1", "a b", "x" * 33, "é", "w1;"])
def test_a_sid_tag_that_nginx_could_not_route_is_refused_at_start(monkeypatch, value):
    monkeypatch.setenv("SID_TAG", value)
    with pytest.raises(ConfigError) as refused:
        Config()
    assert str(refused.value) == f"SID_TAG={value!r}: 1-32 of A-Z a-z 0-9 _ - expected"


def test_a_real_worker_with_a_tag_issues_tagged_session_ids(start_worker):
    worker = start_worker(SID_TAG="w3")
    r = requests.get(f"{worker.url}/socket.io/?EIO=4&transport=polling", timeout=10)
    assert r.status_code == 200
    sid = json.loads(r.text[1:])["sid"]
    assert sid.startswith("w3" + SEPARATOR)
    # The session works under that id: a Socket.IO CONNECT without a token is posted to it
    # and the refusal comes back on the next poll (an unknown sid would be 400).
    session = f"{worker.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
    r = requests.post(session, data="40", timeout=10)
    assert (r.status_code, r.text) == (200, "OK")
    r = requests.get(session, timeout=10)
    assert r.status_code == 200
    assert r.text.startswith("44") and "unauthorized" in r.text
