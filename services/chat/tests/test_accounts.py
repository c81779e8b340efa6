"""Registering users and logging in over REST."""

import pytest

from chat.domain.accounts import issue_token, verify_token
from chat.errors import Unauthorized


def test_register_returns_the_new_user(client):
    r = client.post("/api/users", json={"username": "alice", "password": "s3cret-pass"})
    assert r.status_code == 201
    assert r.get_json() == {"id": r.get_json()["id"], "username": "alice"}


def test_a_taken_name_is_a_conflict_whatever_its_case(client):
    client.post("/api/users", json={"username": "alice", "password": "s3cret-pass"})
    r = client.post("/api/users", json={"username": "ALICE", "password": "other-pass"})
    assert r.status_code == 409
    assert r.get_json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "al", "password": "s3cret-pass"},  # too short
        {"username": "a" * 33, "password": "s3cret-pass"},  # too long
        {"username": "al ice", "password": "s3cret-pass"},  # space
        {"username": "<script>", "password": "s3cret-pass"},
        {"username": "alice", "password": "short"},
        {"username": "alice"},
        {"username": 123, "password": "s3cret-pass"},
        {"username": "alice", "password": "s3cret-pass", "admin": True},
        [],
        "alice",
    ],
)
def test_bad_registrations_are_refused_and_store_nothing(client, body):
    r = client.post("/api/users", json=body)
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid"
    r = client.post("/api/tokens", json={"username": "alice", "password": "s3cret-pass"})
    assert r.status_code == 401  # no such user: nothing was stored
    assert r.get_json() == {
        "error": {"code": "unauthorized", "message": "wrong username or password"}
    }


def test_non_json_body_is_invalid(client):
    r = client.post("/api/users", data="username=alice", content_type="text/plain")
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid"


def test_login_returns_a_token_for_the_user(client):
    client.post("/api/users", json={"username": "alice", "password": "s3cret-pass"})
    r = client.post("/api/tokens", json={"username": "alice", "password": "s3cret-pass"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["user"]["username"] == "alice"
    assert isinstance(body["token"], str) and body["token"]


@pytest.mark.parametrize(
    "creds",
    [
        {"username": "alice", "password": "wrong-pass"},
        {"username": "nobody", "password": "s3cret-pass"},
    ],
)
def test_wrong_credentials_are_unauthorized(client, creds):
    client.post("/api/users", json={"username": "alice", "password": "s3cret-pass"})
    r = client.post("/api/tokens", json=creds)
    assert r.status_code == 401
    assert r.get_json() == {
        "error": {"code": "unauthorized", "message": "wrong username or password"}
    }


def test_passwords_are_stored_as_argon2_hashes(app, client):
    from chat.extensions import db
    from chat.models import User

    client.post("/api/users", json={"username": "alice", "password": "s3cret-pass"})
    with app.app_context():
        stored = db.session.scalar(db.select(User.password_hash))
    assert stored.startswith("$argon2id$")
    assert "s3cret-pass" not in stored


def test_tokens_expire_and_cannot_be_forged():
    from chat.domain.accounts import Principal

    token = issue_token(Principal(1, "alice"), "key-1")
    principal = verify_token(token, "key-1", max_age=60)
    assert (principal.id, principal.username) == (1, "alice")
    assert principal.jti is not None and len(principal.jti) == 32  # this token's own id
    assert principal != verify_token(issue_token(Principal(1, "alice"), "key-1"), "key-1", 60)
    with pytest.raises(Unauthorized, match="invalid"):
        verify_token(token, "another-key", max_age=60)
    with pytest.raises(Unauthorized, match="invalid"):
        verify_token(token[:-2] + "xx", "key-1", max_age=60)
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(token, "key-1", max_age=-1)
    with pytest.raises(Unauthorized, match="missing"):
        verify_token("", "key-1", max_age=60)


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer ", "Basic abc", "Bearer not-a-token", "bearer x.y.z"]
)
def test_authenticated_calls_without_a_valid_bearer_token_are_401(client, header):
    headers = {"Authorization": header} if header is not None else {}
    r = client.get("/api/rooms", headers=headers)
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "unauthorized"
