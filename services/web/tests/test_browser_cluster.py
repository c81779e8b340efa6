"""The same page through nginx before two workers on Redis: people on different workers talk."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_page import PHONE, ChatPage
from playwright.sync_api import expect

from testkit.clients import register
from testkit.cluster import Cluster  # the launcher behind `make cluster-up`

pytestmark = pytest.mark.e2e
# Each new browser lands on a worker by nginx's hash of a fresh affinity key: two workers are
# different with probability 1/2 per try, so 12 tries all landing on one would be 1 in 4,096.
MAX_TRIES_FOR_OTHER_WORKER = 12


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "cluster", workers=2, http_port=None)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def node_of(page: ChatPage) -> str:
    """The worker serving this page's socket, as the page learnt it from the `session` event."""
    connection = page.page.locator("#connection")
    expect(connection).to_have_attribute("title", re.compile(r"^served by worker-\d+$"))
    return connection.get_attribute("title").removeprefix("served by ")


def test_people_on_different_workers_behind_nginx_chat_live(open_page, two_workers):
    alice_name, _ = register(two_workers.url, "alice")
    bob_name, _ = register(two_workers.url, "bob")
    alice = open_page(two_workers.url)
    alice.log_in(alice_name)
    for _ in range(MAX_TRIES_FOR_OTHER_WORKER):
        bob = open_page(two_workers.url, PHONE)
        bob.log_in(bob_name)
        if node_of(bob) != node_of(alice):
            break
        bob.log_out()
    assert node_of(bob) != node_of(alice), "nginx put every browser on the same worker"

    for page in (alice, bob):
        page.open_room("general")
    for page in (alice, bob):  # presence is cluster-wide
        expect(page.page.locator("#online")).to_have_text("2 online: alice, bob")
    alice.type("across workers")
    expect(bob.page.locator("#typing")).to_have_text("alice is typing…")
    alice.composer.press("Enter")
    alice.expect_all_confirmed()  # so the server orders hers first
    bob.send("received on the other one")
    for page in (alice, bob):
        page.expect_texts(["across workers", "received on the other one"])
        page.expect_all_confirmed()
