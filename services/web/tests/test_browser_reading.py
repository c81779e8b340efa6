"""What a person reads and keeps: rich messages, errors in words, an outbox that survives a
reload, a phone-sized screen. Real Chromium against a real worker."""

from __future__ import annotations

import pytest
from chat_page import PHONE, ChatPage, api_post, api_say, stored_texts
from playwright.sync_api import Route, WebSocketRoute, expect

from testkit.clients import DEFAULT_PASSWORD

pytestmark = pytest.mark.e2e


def test_links_mentions_line_breaks_and_right_to_left_text(open_chat, user, chat_server):
    alice = open_chat()
    alice.log_in(user("alice")[0])
    _, bob_token = user("bob")
    linked = "@alice see https://example.org/docs?a=1 and javascript:alert(1)\nsecond line"
    arabic = "مرحبا بالعالم 123"
    api_say(chat_server.url, bob_token, "general", linked)
    api_say(chat_server.url, bob_token, "general", arabic)
    api_say(chat_server.url, bob_token, "general", "@carol www.example.com")
    alice.expect_texts([linked, arabic, "@carol www.example.com"])  # every character kept

    links = alice.page.locator("#timeline .text a")
    expect(links).to_have_count(2)  # the https address and www.example.com, not javascript:
    assert links.evaluate_all("els => els.map(a => [a.href, a.rel, a.target, a.textContent])") == [
        [
            "https://example.org/docs?a=1",
            "noopener noreferrer",
            "_blank",
            "https://example.org/docs?a=1",
        ],
        ["https://www.example.com/", "noopener noreferrer", "_blank", "www.example.com"],
    ]
    mentions = alice.page.locator("#timeline .mention")
    expect(mentions).to_have_text(["@alice", "@carol"])
    expect(alice.page.locator("#timeline .mention-me")).to_have_text(["@alice"])
    expect(alice.page.locator("#timeline .message.mentions-me")).to_have_count(1)

    texts = alice.message_texts
    assert texts.evaluate_all("els => els.map(e => e.dir)") == ["auto", "auto", "auto"]
    directions = texts.evaluate_all("els => els.map(e => getComputedStyle(e).direction)")
    assert directions == ["ltr", "rtl", "ltr"]
    assert texts.first.evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap"
    height = "e => e.getBoundingClientRect().height"
    assert texts.first.evaluate(height) > 1.5 * texts.nth(2).evaluate(height)  # two lines
    # The exact time is on every message (hover shows the date too).
    assert all(alice.messages.evaluate_all("els => els.map(e => e.title.length > 4)"))
    alice.screenshot("rich-messages")


@pytest.mark.parametrize(
    ("username", "password", "action", "words"),
    [
        ("a b", "long enough pw", "Register", "Usernames are 3 to 32 letters, digits, _ or -."),
        ("ok_name", "short", "Register", "Passwords need at least 8 characters."),
        ("taken", "long enough pw", "Register", "That username is taken. Try another."),
        ("taken", "wrong password!", "Log in", "Wrong username or password."),
    ],
)
def test_sign_up_and_log_in_errors_are_words(open_chat, user, username, password, action, words):
    user("taken")
    page = open_chat(PHONE)
    page.page.get_by_label("Username", exact=True).fill(username)
    page.page.get_by_label("Password", exact=True).fill(password)
    page.page.get_by_role("button", name=action, exact=True).click()
    expect(page.page.locator("#auth-error")).to_have_text(words)


def test_room_form_errors_are_words(open_chat, user, chat_server):
    name, token = user("alice")
    api_post(chat_server.url, token, "/rooms", {"name": "taken"})
    page = open_chat()
    page.log_in(name)
    page.page.locator("#new-room summary").click()
    error = page.page.locator("#new-room-error")
    for room, members, words in [
        ("no spaces here", "", "Room names are 1 to 64 letters, digits, _ or -."),
        ("fine", "a b!", "Members are usernames: 3 to 32 letters, digits, _ or -."),
        ("taken", "", "A room with that name exists already."),
    ]:
        page.page.get_by_label("Name", exact=True).fill(room)
        page.page.get_by_label("Members").fill(members)
        page.page.get_by_role("button", name="Create").click()
        expect(error).to_have_text(words)


def test_a_message_written_offline_survives_a_reload_and_is_sent_once(open_chat, user, chat_server):
    alice = open_chat()
    blocked: list[bool] = []

    def websocket_gate(ws: WebSocketRoute) -> None:
        if blocked:
            ws.close()
        else:
            ws.connect_to_server()

    def polling_gate(route: Route) -> None:
        if blocked:
            route.abort()
        else:
            route.continue_()

    alice.page.route_web_socket("**/socket.io/**", websocket_gate)
    alice.page.route("**/socket.io/**", polling_gate)
    alice.goto()  # reload so the page's socket goes through the gates
    name, token = user("alice")
    alice.log_in(name)
    alice.send("before")
    alice.expect_all_confirmed()

    blocked.append(True)  # from now on no socket gets through
    alice.page.context.set_offline(True)
    alice.expect_connection("offline")
    alice.send("written offline")
    expect(alice.page.locator("#timeline .message.pending .text")).to_have_text(["written offline"])
    assert alice.warns_before_closing()  # closing now would lose nothing, but asks

    alice.page.context.set_offline(False)
    alice.page.reload()  # the page comes back; the socket still cannot
    expect(alice.page.locator("#timeline .message.pending .text")).to_have_text(["written offline"])
    assert stored_texts(chat_server.url, token, "general") == ["before"]

    blocked.clear()
    # The attempt under way when the gate opened may wait out its 10 s handshake timeout.
    expect(alice.page.locator("#connection")).to_have_attribute(
        "data-state", "connected", timeout=30_000
    )
    alice.expect_all_confirmed()
    alice.expect_texts(["before", "written offline"])
    assert stored_texts(chat_server.url, token, "general") == ["before", "written offline"]
    assert alice.page.evaluate(f"localStorage.getItem('chat.outbox.{name}')") is None
    assert not alice.warns_before_closing()


def test_a_message_left_in_a_closed_tab_is_sent_when_the_person_is_back(
    open_chat, user, chat_server, tmp_path
):
    alice = open_chat()
    name, token = user("alice")
    alice.log_in(name)
    alice.expect_texts([])
    context = alice.page.context
    context.set_offline(True)
    alice.expect_connection("offline")
    alice.send("left in a closed tab")
    expect(alice.page.locator("#timeline .message.pending")).to_have_count(1)
    alice.page.close()  # the tab is gone; the browser (its storage) stays
    context.set_offline(False)
    assert stored_texts(chat_server.url, token, "general") == []

    again = ChatPage(context.new_page(), chat_server.url, tmp_path)
    again.goto()
    again.log_in(name)  # a new tab: a new session, the same person
    again.expect_texts(["left in a closed tab"])
    again.expect_all_confirmed()
    assert stored_texts(chat_server.url, token, "general") == ["left in a closed tab"]
    assert again.errors == []


def test_a_phone_shows_my_name_room_names_and_badges_apart(open_chat, user, chat_server):
    name, token = user("bartholomew")
    _, carol_token = user("carol")
    for room in ("design-reviews", "announcements"):
        api_post(
            chat_server.url,
            carol_token,
            "/rooms",
            {"name": room, "private": True, "members": [name]},
        )
        for n in range(3):
            api_say(chat_server.url, carol_token, room, f"news {n}")
    page = open_chat(PHONE)
    page.log_in(name, DEFAULT_PASSWORD)

    me = page.page.locator("#me")
    assert me.evaluate("e => e.scrollWidth <= e.clientWidth"), "own name cut off"
    page.show_rooms()
    for room in ("design-reviews", "announcements"):
        button = page.room_button(room)
        room_name = button.locator(".room-name")
        expect(room_name).to_have_text(f"#{room}")
        assert room_name.evaluate("e => e.scrollWidth <= e.clientWidth"), f"#{room} cut off"
        badge = button.locator(".badge")
        expect(badge).to_have_text("3")
        name_box, badge_box = room_name.bounding_box(), badge.bounding_box()
        assert name_box["x"] + name_box["width"] <= badge_box["x"], "badge over the name"
    page.screenshot("phone-rooms")
    page.page.keyboard.press("Escape")
    page.screenshot("phone-room")


STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"


def test_the_page_runs_under_a_strict_content_security_policy(open_chat, user, chat_server):
    """No inline script or style: everything works with script-src/style-src 'self'."""
    page = open_chat()

    def with_csp(route: Route) -> None:
        response = route.fetch()
        route.fulfill(
            response=response,
            headers={**response.headers, "content-security-policy": STRICT_CSP},
        )

    page.page.route(f"{chat_server.url}/", with_csp)
    page.page.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page.goto()
    name, _ = user("alice")
    page.log_in(name)
    page.send("a link https://example.org and @alice\nover two lines")
    page.expect_all_confirmed()
    expect(page.page.locator("#timeline .text a")).to_have_count(1)
    page.page.locator("#new-room summary").click()
    page.page.locator("#browse-rooms summary").click()
    expect(page.page.locator("#public-rooms .room-name")).to_have_text(["#general"])
    assert page.page.evaluate("window.__violations") == []
    # The policy is in force: an inline style attribute is refused and reported.
    page.page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_value("window.__violations.length", 1)
    assert page.page.evaluate("window.__violations[0]").startswith("style-src")
