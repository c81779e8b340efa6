"""The browser client, used by people in real Chromium against a real chat worker."""

from __future__ import annotations

import pytest
from chat_page import PHONE, api_post, api_say, stored_texts
from playwright.sync_api import expect

from testkit.clients import DEFAULT_PASSWORD

pytestmark = pytest.mark.e2e


def test_two_people_see_each_other_typing_and_talking(open_chat, user):
    bob, _ = user("bob")
    alice = open_chat()  # desktop
    alice.log_in("alice", register=True)  # a new person registers through the form
    bob_page = open_chat(PHONE)
    bob_page.log_in(bob)

    for page in (alice, bob_page):
        page.open_room("general")
    for page in (alice, bob_page):
        expect(page.page.locator("#online")).to_have_text("2 online: alice, bob")

    alice.type("Hi Bob")
    expect(bob_page.page.locator("#typing")).to_have_text("alice is typing…")
    alice.composer.press("Enter")
    bob_page.expect_texts(["Hi Bob"])
    expect(bob_page.page.locator("#typing")).to_have_text("")  # her message ends her typing

    # Shift+Enter is a new line; consecutive messages by one author share one author line.
    alice.type("two lines:")
    alice.composer.press("Shift+Enter")
    alice.type("here")
    alice.composer.press("Enter")
    alice.expect_all_confirmed()  # so the server orders hers before bob's
    bob_page.send("Hello Alice!")
    for page in (alice, bob_page):
        page.expect_texts(["Hi Bob", "two lines:\nhere", "Hello Alice!"])
    expect(alice.messages.locator(".status")).to_have_count(0)  # all confirmed by the server
    shown = alice.shown()
    assert [(m["seq"], m["user"], m["continued"], m["pending"]) for m in shown] == [
        (1, "alice", False, False),
        (2, "alice", True, False),
        (3, "bob", False, False),
    ]
    times = alice.page.locator("#timeline .message time").all_inner_texts()
    assert all(":" in t for t in times), times  # a local hh:mm on every message

    # "is typing…" also goes away by itself when the typist stops without sending.
    bob_page.type("hmm")
    expect(alice.page.locator("#typing")).to_have_text("bob is typing…")
    alice.screenshot("conversation")
    bob_page.screenshot("conversation")
    expect(alice.page.locator("#typing")).to_have_text("", timeout=8_000)

    bob_page.show_rooms()
    bob_page.screenshot("conversation-room-drawer")


def test_scroll_back_through_history_and_switching_rooms_keeps_place_and_draft(
    open_chat, user, chat_server
):
    _, carol_token = user("carol")
    api_post(chat_server.url, carol_token, "/rooms", {"name": "archive"})
    texts = [f"old message {n}" for n in range(1, 121)]
    for text in texts:
        api_say(chat_server.url, carol_token, "archive", text)

    bob = open_chat()
    bob.log_in(user("bob")[0])
    expect(bob.room_buttons).to_have_count(1)  # only bob's own rooms: #general
    bob.join_public_room("archive")  # from "Browse public rooms"
    bob.expect_texts(texts[-50:])  # join shows the latest 50
    expect(bob.unread_badge("archive")).to_have_count(0)

    bob.scroll_to_top()
    bob.expect_texts(texts[-100:])
    # The reader stays on the message they were at: the first of the old page is still in view.
    first_before = bob.page.locator('#timeline .message[data-seq="71"]')
    expect(first_before).to_be_in_viewport()
    bob.scroll_to_top()
    bob.expect_texts(texts)
    expect(bob.page.locator(".history-edge")).to_have_text("This is the beginning of #archive.")
    assert [m["seq"] for m in bob.shown()] == list(range(1, 121))
    expect(bob.page.locator("#online")).to_have_text("1 online: bob")
    bob.screenshot("history")

    # Leave half-way up with a half-written message, talk elsewhere, come back.
    bob.page.locator('#timeline .message[data-seq="40"]').scroll_into_view_if_needed()
    place = bob.scroll_top()
    bob.composer.fill("a draft for the archive")
    bob.open_room("general")
    assert bob.composer.input_value() == ""
    bob.send("meanwhile in general")
    bob.expect_texts(["meanwhile in general"])
    bob.open_room("archive")
    assert bob.composer.input_value() == "a draft for the archive"
    assert abs(bob.scroll_top() - place) < 2
    bob.open_room("general")
    expect(bob.composer).to_have_value("")


def test_private_room_is_visible_to_members_only(open_chat, user):
    alice_name, _ = user("alice")
    bob_name, _ = user("bob")
    eve_name, _ = user("eve")
    alice = open_chat()
    alice.log_in(alice_name)
    alice.create_room("secret", private=True, members=[bob_name])
    expect(alice.page.locator("#room-title")).to_contain_text("private: alice, bob")
    alice.send("only for bob")
    alice.expect_texts(["only for bob"])

    bob = open_chat(PHONE)
    bob.log_in(bob_name)
    bob.show_rooms()
    expect(bob.unread_badge("secret")).to_have_text("1")
    bob.open_room("secret")
    bob.expect_texts(["only for bob"])
    # Away in another room, bob sees new messages counted live (the phone's Rooms button too).
    bob.open_room("general")
    alice.send("are you there?")
    expect(bob.page.locator("#rooms-toggle-unread")).to_have_text("1")
    expect(bob.page).to_have_title("(1) Chat")
    bob.show_rooms()
    expect(bob.unread_badge("secret")).to_have_text("1")
    bob.screenshot("unread-in-drawer")
    bob.open_room("secret")
    bob.expect_texts(["only for bob", "are you there?"])
    expect(bob.unread_badge("secret")).to_have_count(0)
    expect(bob.page.locator("#rooms-toggle-unread")).to_be_hidden()
    expect(bob.page).to_have_title("Chat")

    eve = open_chat()
    eve.log_in(eve_name)
    expect(eve.room_buttons).to_have_count(1)  # general only
    expect(eve.room_button("general")).to_be_visible()
    expect(eve.room_button("secret")).to_have_count(0)
    # Even someone who knows the name gets nothing through the API the page uses.
    status = eve.page.evaluate("""async () => (await fetch('/api/rooms/secret/messages', {
        headers: {Authorization: 'Bearer ' + sessionStorage.getItem('chat.token')}})).status""")
    assert status == 403


XSS_PAYLOADS = [
    "<script>window.__pwned = 'script'</script>",
    "<img src=x onerror=\"window.__pwned = 'img'\">",
    "<svg onload=\"window.__pwned = 'svg'\"></svg><b>bold?</b>",
]


def test_markup_in_messages_is_shown_as_text_and_never_runs(open_chat, user, chat_server):
    alice = open_chat()
    alice.log_in(user("alice")[0])
    bob = open_chat(PHONE)
    bob.log_in(user("bob")[0])
    _, carol_token = user("carol")
    for page in (alice, bob):
        page.open_room("general")

    alice.send(XSS_PAYLOADS[0])  # through the page, live to bob
    alice.send(XSS_PAYLOADS[1])
    alice.expect_all_confirmed()  # so the server orders hers before carol's
    api_say(chat_server.url, carol_token, "general", XSS_PAYLOADS[2])  # through REST, pushed live
    for page in (alice, bob):
        page.expect_texts(XSS_PAYLOADS)

    # A late joiner gets them from history: the other way in.
    dave = open_chat()
    dave.log_in(user("dave")[0])
    dave.expect_texts(XSS_PAYLOADS)
    bob.screenshot("markup-as-text")
    for page in (alice, bob, dave):
        assert page.page.evaluate("window.__pwned") is None
        assert page.errors == []  # no alert, no uncaught error
        expect(
            page.page.locator("#timeline img, #timeline script, #timeline svg, #timeline b")
        ).to_have_count(0)


FOCUS_DESCRIPTION = """() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return {
        what: el.id || el.dataset.room || el.textContent.trim().slice(0, 20),
        outlined: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
    };
}"""


def test_keyboard_alone_is_enough_and_the_session_lasts_until_log_out(open_chat, user, chat_server):
    name, token = user("kim")
    api_post(chat_server.url, token, "/rooms", {"name": "lobby"})
    page = open_chat()
    keys = page.page.keyboard
    # The username field has focus on arrival; Tab to the password, Enter logs in.
    keys.type(name)
    keys.press("Tab")
    keys.type("correct horse battery")
    keys.press("Enter")
    page.expect_connection("connected")
    expect(page.composer).to_be_focused()

    # Walk the page with Tab from the skip link: every stop visibly focused, in reading order.
    page.page.locator(".skip-link").focus()
    stops = [page.page.evaluate(FOCUS_DESCRIPTION)]
    for _ in range(10):
        keys.press("Tab")
        stops.append(page.page.evaluate(FOCUS_DESCRIPTION))
    assert [s["what"] for s in stops] == [
        "Skip to message box",
        "logout",
        "people-search",
        "general",
        "lobby",
        "Browse public rooms",
        "New room",
        "leave-room",
        "timeline",
        "composer-text",
        "Send",
    ]
    assert all(s["outlined"] for s in stops), stops

    # Choose a room from the list with the keyboard, write two lines, send with Enter.
    page.room_button("lobby").focus()
    keys.press("Enter")
    expect(page.page.locator("#room-title")).to_contain_text("#lobby")
    page.composer.focus()
    keys.type("typed")
    keys.press("Shift+Enter")
    keys.type("without a mouse")
    keys.press("Enter")
    page.expect_texts(["typed\nwithout a mouse"])
    page.expect_all_confirmed()

    page.page.reload()  # the token lives for the tab's session
    page.expect_connection("connected")
    expect(page.page.locator("#room-title")).to_contain_text("#lobby")
    page.expect_texts(["typed\nwithout a mouse"])
    page.log_out()
    assert page.page.evaluate("sessionStorage.getItem('chat.token')") is None
    page.page.reload()
    expect(page.page.get_by_label("Username", exact=True)).to_be_visible()


def test_the_message_box_takes_text_only_once_a_room_is_open(open_chat, user, chat_server):
    """Nothing typed right after logging in is lost while the room list is still loading.

    The page connects its socket and loads the room list at the same time; a message sent
    before the first room was open used to be cleared from the box and never sent (a CI run
    lost one this way). The room list is held back here until the test lets it through.
    """
    alice = open_chat()
    held = []
    alice.page.route("**/api/rooms", lambda route: held.append(route))
    name, token = user("alice")
    page = alice.page
    page.get_by_label("Username", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page.locator("#me")).to_have_text(name)
    alice.expect_connection("connected")  # the socket is up, the room list still held back
    expect(alice.composer).to_be_disabled()
    expect(page.get_by_role("button", name="Send")).to_be_disabled()

    assert held, "the room list request was not held, so the test proved nothing"
    for route in held:
        route.continue_()
    expect(alice.composer).to_be_enabled()
    expect(alice.composer).to_be_focused()
    alice.send("first words")
    alice.expect_texts(["first words"])
    alice.expect_all_confirmed()
    assert stored_texts(chat_server.url, token, "general") == ["first words"]
