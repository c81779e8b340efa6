"""Every worker serves the browser client, and only the files the page loads."""

from pathlib import Path

import pytest


@pytest.fixture
def web_root(app) -> Path:
    root = Path(app.config["WEB_ROOT"])
    for name in [
        "index.html",
        "style.css",
        "js/main.js",
        "vendor/socket.io.min.js",
        "package.json",
        "tests/test_browser.py",
        "node_modules/x/index.js",
    ]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"/* {name} */")
    return root


def test_the_page_and_its_assets_are_served(client, web_root):
    assert client.get("/").data == b"/* index.html */"
    for path in ["/style.css", "/js/main.js", "/vendor/socket.io.min.js"]:
        assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/package.json",
        "/tests/test_browser.py",
        "/node_modules/x/index.js",
        "/js/../package.json",
        "/../services/chat/pyproject.toml",
    ],
)
def test_nothing_else_in_the_client_folder_is_served(client, web_root, path):
    assert client.get(path).status_code == 404
