"""The browser client across lost connections: nothing lost, nothing shown twice, order kept."""

from __future__ import annotations

import json

import pytest
from chat_page import PHONE, api_say, stored_texts
from playwright.sync_api import WebSocketRoute, expect

pytestmark = pytest.mark.e2e


def test_server_restart_loses_no_message_and_shows_none_twice(open_chat, user, chat_server):
    alice = open_chat()
    alice.log_in(user("alice")[0])
    bob = open_chat(PHONE)
    bob.log_in(user("bob")[0])
    alice.send("before the restart")
    bob.expect_texts(["before the restart"])

    chat_server.stop()
    for page in (alice, bob):
        page.expect_connection("reconnecting")
        expect(page.page.locator("#online")).to_have_text("")  # unknown while disconnected
    # Typed while the server is down: shown at once as pending, in the order typed.
    during = [f"while down {n}" for n in range(1, 4)]
    for text in during:
        alice.send(text)
    alice.expect_texts(["before the restart", *during])
    expect(alice.page.locator("#timeline .message.pending")).to_have_count(3)
    alice.screenshot("reconnecting")

    chat_server.start_again()  # same port, same database
    for page in (alice, bob):
        page.expect_connection("connected")
        expect(page.page.locator("#online")).to_have_text("2 online: alice, bob")
    alice.expect_all_confirmed()
    for page in (alice, bob):
        page.expect_texts(["before the restart", *during])
    alice.send("after the restart")
    for page in (alice, bob):
        page.expect_texts(["before the restart", *during, "after the restart"])
        page.expect_all_confirmed()
        assert [m["seq"] for m in page.shown()] == [1, 2, 3, 4, 5]


def test_offline_reader_catches_up_and_offline_writer_is_delivered_once(
    open_chat, user, chat_server
):
    alice = open_chat()
    alice.log_in(user("alice")[0])
    bob = open_chat(PHONE)
    bob.log_in(user("bob")[0])
    _, carol_token = user("carol")
    alice.send("first")
    bob.expect_texts(["first"])

    bob.page.context.set_offline(True)
    bob.expect_connection("offline")
    # More than one join page (100) is missed while bob is away, from the page and from REST.
    missed = [f"missed {n}" for n in range(1, 106)]
    for text in missed[:3]:
        alice.send(text)
    alice.expect_all_confirmed()  # so the server orders hers before carol's
    for text in missed[3:]:
        api_say(chat_server.url, carol_token, "general", text)
    bob.send("bob wrote this offline")  # pending until bob is back
    expect(bob.page.locator("#timeline .message.pending")).to_have_count(1)
    alice.expect_texts(["first", *missed])

    bob.page.context.set_offline(False)
    bob.expect_connection("connected")
    everything = ["first", *missed, "bob wrote this offline"]
    for page in (alice, bob):
        page.expect_texts(everything)
        page.expect_all_confirmed()
        assert [m["seq"] for m in page.shown()] == list(range(1, len(everything) + 1))


def test_a_message_lost_on_a_live_connection_is_fetched_when_seq_jumps(
    open_chat, user, chat_server
):
    bob = open_chat()
    dropped: list[str] = []
    sockets: list[WebSocketRoute] = []

    def drop_one_message(ws: WebSocketRoute) -> None:
        """Passes every frame through, except the push of the message 'lost in transit'."""
        sockets.append(ws)
        server = ws.connect_to_server()
        ws.on_message(server.send)

        def to_page(frame: str | bytes) -> None:
            if isinstance(frame, str) and frame.startswith('42["message"'):
                event, payload = json.loads(frame[2:])
                if payload["text"] == "lost in transit" and not dropped:
                    dropped.append(frame)
                    return
            ws.send(frame)

        server.on_message(to_page)

    bob.page.route_web_socket("**/socket.io/**", drop_one_message)
    bob.goto()  # reload so the page's socket goes through the route
    bob.log_in(user("bob")[0])
    _, carol_token = user("carol")
    api_say(chat_server.url, carol_token, "general", "one")
    bob.expect_texts(["one"])
    api_say(chat_server.url, carol_token, "general", "lost in transit")
    api_say(chat_server.url, carol_token, "general", "three")
    bob.expect_texts(["one", "lost in transit", "three"])
    assert dropped, "the push of message 2 was not intercepted, so the test proved nothing"
    assert len(sockets) == 1, "the page reconnected: this test is about a live connection"


@pytest.mark.parametrize("lost", ["the message", "its ack"])
def test_a_send_cut_off_by_a_dropped_connection_is_retried_and_stored_once(
    open_chat, user, chat_server, lost
):
    """The connection dies right after a send, losing the message or the server's ack to it."""
    alice = open_chat()
    cut: list[str] = []
    connections: list[WebSocketRoute] = []

    def cut_after_send(ws: WebSocketRoute) -> None:
        connections.append(ws)
        server = ws.connect_to_server()
        sent_ids: list[str] = []

        def to_server(frame: str | bytes) -> None:
            if isinstance(frame, str) and not cut and '"retry me"' in frame:
                ack_id = frame[2 : frame.index("[")]  # 42<id>["message", {...}]
                if lost == "the message":
                    cut.append(frame)
                    ws.close()
                    server.close()
                    return
                sent_ids.append(ack_id)
            server.send(frame)

        def to_page(frame: str | bytes) -> None:
            if isinstance(frame, str) and sent_ids and '"retry me"' in frame:
                # Neither the room's push of the stored message nor the ack reaches the page.
                if frame.startswith(f"43{sent_ids[0]}["):
                    cut.append(frame)
                    sent_ids.clear()
                    ws.close()
                    server.close()
                return
            ws.send(frame)

        ws.on_message(to_server)
        server.on_message(to_page)

    alice.page.route_web_socket("**/socket.io/**", cut_after_send)
    alice.goto()
    name, token = user("alice")
    alice.log_in(name)
    alice.send("before")
    alice.expect_all_confirmed()
    alice.send("retry me")
    alice.expect_all_confirmed()  # only after a reconnect: the first connection was cut
    assert cut, f"{lost} was not intercepted, so the test proved nothing"
    assert len(connections) == 2  # the cut one and the reconnect
    alice.expect_connection("connected")
    alice.send("after")
    alice.expect_texts(["before", "retry me", "after"])
    alice.expect_all_confirmed()

    assert stored_texts(chat_server.url, token, "general") == ["before", "retry me", "after"]
    assert [m["seq"] for m in alice.shown()] == [1, 2, 3]
