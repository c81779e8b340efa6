"""The OpenAPI document is generated from the same schemas that validate requests."""


def test_openapi_documents_every_endpoint_with_its_schemas(client):
    r = client.get("/api/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"].startswith("3.1")
    operations = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert operations == {
        ("/api/users", "post"),
        ("/api/tokens", "post"),
        ("/api/rooms", "get"),
        ("/api/rooms", "post"),
        ("/api/rooms/{room}/messages", "get"),
        ("/api/rooms/{room}/messages", "post"),
        ("/api/users", "get"),
        ("/api/dms", "post"),
        ("/api/rooms/{room}/members", "post"),
        ("/api/rooms/{room}/members/{username}", "delete"),
        ("/api/rooms/{room}/read", "post"),
        ("/api/tokens/current", "delete"),
        ("/api/tokens", "delete"),
        ("/api/users/me/password", "put"),
    }
    assert set(doc["paths"]["/api/dms"]["post"]["responses"]) >= {"200", "201", "404"}
    room = doc["components"]["schemas"]["RoomOut"]["properties"]
    assert set(room) >= {"kind", "last_read_seq", "unread"}
    post_message = doc["paths"]["/api/rooms/{room}/messages"]["post"]
    assert post_message["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MessageText"
    }
    assert post_message["security"] == [{"bearer": []}]
    assert set(post_message["responses"]) >= {"201", "400", "401", "403", "404", "429"}
    credentials = doc["components"]["schemas"]["Credentials"]
    assert credentials["properties"]["username"]["pattern"] == "^[A-Za-z0-9_-]{3,32}$"
    assert credentials["properties"]["password"]["minLength"] == 8
    history = {
        p["name"]: p for p in doc["paths"]["/api/rooms/{room}/messages"]["get"]["parameters"]
    }
    assert history["limit"]["schema"]["maximum"] == 100
    assert history["room"]["in"] == "path"
    logout = doc["paths"]["/api/tokens/current"]["delete"]
    assert set(logout["responses"]) == {"204", "400", "401"}
    assert logout["security"] == [{"bearer": []}]
    password = doc["paths"]["/api/users/me/password"]["put"]
    assert password["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PasswordChange"
    }
    assert set(password["responses"]) == {"204", "400", "401", "403", "429"}


def test_unknown_api_paths_and_methods_answer_in_the_error_shape(client):
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = client.delete("/api/rooms")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"


def test_a_body_over_the_size_limit_is_refused_with_413(client):
    r = client.post(
        "/api/users", data=b"{" + b" " * (70 * 1024) + b"}", content_type="application/json"
    )
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "too_large"
