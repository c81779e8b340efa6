"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, one real chat worker."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chat_page import DESKTOP, ChatPage
from playwright.sync_api import Browser, BrowserContext, expect, sync_playwright

from testkit.clients import register
from testkit.processes import REPO_ROOT, ChatWorker, require_program

SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
# Debian's Chromium, headless; nothing reaches past loopback (no updates, sync or field trials).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]
# The page reacts within a second; reconnects back off up to 5 s; 15 s covers a busy CI box.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def web_assets() -> None:
    """socket.io-client in services/web/vendor/, as `make web-assets` puts it there."""
    require_program("npm")
    subprocess.run(["make", "-s", "web-assets"], cwd=REPO_ROOT, check=True)


@pytest.fixture(scope="session")
def browser(web_assets) -> Iterator[Browser]:
    chromium = require_program("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class ChatServer:
    """One real worker (SQLite, no Redis) that a test may stop and start again in place."""

    def __init__(self, worker: ChatWorker, workdir: Path, env: dict[str, str]) -> None:
        self.worker, self.workdir, self.env = worker, workdir, env
        self.restarted: list[ChatWorker] = []

    @property
    def url(self) -> str:
        return self.worker.url

    def stop(self) -> None:
        self.worker.stop()

    def start_again(self) -> None:
        """A new worker process on the same port and data directory (same database)."""
        self.worker = ChatWorker(self.workdir, port=self.worker.port, env=self.env)
        self.restarted.append(self.worker)


@pytest.fixture
def chat_server(start_worker, tmp_path: Path) -> Iterator[ChatServer]:
    # The scroll-back test seeds 120 messages as one user in a few seconds.
    env = {"RATE_LIMIT_MESSAGES": "1000"}
    server = ChatServer(start_worker(**env), tmp_path, env)
    yield server
    for worker in server.restarted:
        worker.stop()


@pytest.fixture
def user(chat_server) -> Callable[..., tuple[str, str]]:
    """Registers a user over REST: user("alice") -> ("alice", token)."""
    return lambda name=None: register(chat_server.url, name)


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., ChatPage]]:
    """Opens the client at a URL in a fresh browser context (its own storage: one person each)."""
    contexts: list[BrowserContext] = []
    pages: list[ChatPage] = []

    def open_at(base_url: str, viewport: dict[str, int] = DESKTOP) -> ChatPage:
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        page = ChatPage(context.new_page(), base_url, SCREENSHOTS)
        pages.append(page)
        page.goto()
        return page

    yield open_at
    for context in contexts:
        context.close()
    errors = [error for page in pages for error in page.errors]
    assert not errors, f"the page misbehaved: {errors}"


@pytest.fixture
def open_chat(open_page, chat_server: ChatServer) -> Callable[..., ChatPage]:
    """open_chat(viewport=DESKTOP): a person's tab on the test's chat server."""
    return lambda viewport=DESKTOP: open_page(chat_server.url, viewport)
