"""People talking to people: a DM from the people picker, unread counts true on every device,
notifications in a hidden tab, members of a private room, and a page that never polls.
Real Chromium against a real worker, over the contract of docs/API.md (DMs, `room`,
`room_removed`, `read`)."""

from __future__ import annotations

import pytest
from chat_page import PHONE, ChatPage, api_post, api_say
from playwright.sync_api import Request, expect

pytestmark = pytest.mark.e2e

# A person stays on the page this long doing nothing; the page must not ask the server anything.
IDLE_SECONDS = 60

# The browser's Notification API and page visibility, under the test's control.
NOTIFICATION_STUB = """
(() => {
    window.__notifications = [];
    window.__permissionAsked = 0;
    class TestNotification {
        static permission = "default";
        static requestPermission() {
            window.__permissionAsked += 1;
            TestNotification.permission = "granted";
            return Promise.resolve("granted");
        }
        constructor(title, options = {}) {
            window.__notifications.push({title, body: options.body ?? ""});
        }
        close() {}
    }
    window.Notification = TestNotification;
    let hidden = false;
    Object.defineProperty(document, "visibilityState", {
        get: () => (hidden ? "hidden" : "visible"),
    });
    Object.defineProperty(document, "hidden", {get: () => hidden});
    window.__setHidden = (value) => {
        hidden = value;
        document.dispatchEvent(new Event("visibilitychange"));
    };
})();
"""


def rest_calls(page: ChatPage) -> list[str]:
    """Every HTTP request the page makes to the server's API or Socket.IO over HTTP, from now."""
    calls: list[str] = []

    def seen(request: Request) -> None:
        if "/api/" in request.url or "/socket.io/" in request.url:
            calls.append(f"{request.method} {request.url}")

    page.page.on("request", seen)
    return calls


def dm_button(page: ChatPage, other: str):
    return page.page.locator('#room-list [data-kind="dm"]').filter(
        has=page.page.locator(".room-name", has_text=other)
    )


def test_an_idle_page_asks_nothing_and_a_dm_reaches_it_at_once(open_chat, user):
    alice_name, _ = user("alice")
    bob_name, _ = user("bob")
    alice = open_chat()
    alice.log_in(alice_name)
    alice.expect_texts([])  # #general, empty: the first load is over
    expect(alice.page).to_have_title("Chat")
    calls = rest_calls(alice)

    alice.page.wait_for_timeout(IDLE_SECONDS * 1000)  # a person reading, not typing

    # Bob finds her with the keyboard alone: type, arrow down to her name, Enter.
    bob = open_chat(PHONE)
    bob.log_in(bob_name)
    bob.show_rooms()
    search = bob.page.get_by_label("Message a person")
    search.focus()
    search.press_sequentially("ALI")  # case does not matter
    expect(bob.page.locator("#people-results button")).to_have_text([alice_name])
    search.press("ArrowDown")
    expect(bob.page.get_by_role("button", name=f"Message {alice_name}")).to_be_focused()
    bob.page.keyboard.press("Enter")
    expect(bob.page.locator("#room-title")).to_contain_text(alice_name)
    expect(bob.page.locator("#room-title")).to_contain_text("direct message")

    # Alice's page learns of the DM over its socket, at once: no poll, no reload.
    expect(dm_button(alice, bob_name)).to_have_count(1)
    bob.send("hi alice, got a minute?")
    expect(dm_button(alice, bob_name).locator(".badge")).to_have_text("1")
    expect(alice.page).to_have_title("(1) Chat")
    assert calls == [], f"the page asked the server while idle: {calls}"

    dm_button(alice, bob_name).click()
    alice.expect_texts(["hi alice, got a minute?"])
    expect(alice.page).to_have_title("Chat")
    alice.screenshot("dm")
    bob.screenshot("dm")


def test_reading_on_one_device_clears_the_badge_on_the_other(open_chat, user, chat_server):
    alice_name, _ = user("alice")
    bob_name, bob_token = user("bob")
    history = [f"before alice came {n}" for n in range(1, 31)]
    for text in history:
        api_say(chat_server.url, bob_token, "general", text)
    desk = open_chat()
    desk.log_in(alice_name)
    desk.expect_texts(history)  # #general's past is there to read, not "unread"
    expect(desk.page).to_have_title("Chat")
    phone = open_chat(PHONE)
    phone.log_in(alice_name)

    dm = api_post(chat_server.url, bob_token, "/dms", {"user": alice_name})
    assert dm["kind"] == "dm"
    api_say(chat_server.url, bob_token, dm["name"], "one")
    api_say(chat_server.url, bob_token, dm["name"], "two")
    for page in (desk, phone):
        page.show_rooms()
        expect(dm_button(page, bob_name).locator(".badge")).to_have_text("2")
        expect(page.page).to_have_title("(2) Chat")
    expect(phone.page.locator("#rooms-toggle-unread")).to_have_text("2")

    dm_button(desk, bob_name).click()
    desk.expect_texts(["one", "two"])
    # The phone hears the read position from the server: the badge goes, nothing fetched.
    calls = rest_calls(phone)
    expect(dm_button(phone, bob_name).locator(".badge")).to_have_count(0)
    expect(phone.page).to_have_title("Chat")
    expect(phone.page.locator("#rooms-toggle-unread")).to_be_hidden()
    assert calls == []

    # A new device of hers starts with the same truth: nothing unread.
    laptop = open_chat()
    laptop.log_in(alice_name)
    expect(dm_button(laptop, bob_name)).to_have_count(1)
    expect(dm_button(laptop, bob_name).locator(".badge")).to_have_count(0)
    expect(laptop.page).to_have_title("Chat")


def test_a_hidden_tab_notifies_of_dms_and_mentions_and_counts_them_in_its_title(
    open_chat, user, chat_server
):
    alice_name, _ = user("alice")
    bob_name, bob_token = user("bob")
    alice = open_chat()
    alice.page.add_init_script(NOTIFICATION_STUB)
    alice.goto()  # again, with the stub in place
    alice.log_in(alice_name)
    alice.expect_texts([])
    assert alice.page.evaluate("window.__permissionAsked") == 0  # never on load
    alice.send("morning all")  # the first message she sends: now the page may ask
    alice.expect_all_confirmed()
    assert alice.page.evaluate("window.__permissionAsked") == 1

    alice.page.evaluate("window.__setHidden(true)")  # she switches to another tab
    api_say(chat_server.url, bob_token, "general", "plain talk, nothing for alice")
    api_say(chat_server.url, bob_token, "general", f"@{alice_name} can you review?")
    expect(alice.page).to_have_title("(2) Chat")  # the open room counts while hidden
    dm = api_post(chat_server.url, bob_token, "/dms", {"user": alice_name})
    api_say(chat_server.url, bob_token, dm["name"], "psst, in private")
    expect(alice.page).to_have_title("(3) Chat")
    alice.wait_for_value("window.__notifications.length", 2)
    assert alice.page.evaluate("window.__notifications") == [
        {
            "title": f"{bob_name} in #general mentioned you",
            "body": f"@{alice_name} can you review?",
        },
        {"title": bob_name, "body": "psst, in private"},
    ]

    alice.page.evaluate("window.__setHidden(false)")  # back: #general is read, the DM is not
    expect(alice.page).to_have_title("(1) Chat")
    expect(alice.page.locator("#timeline .mention-me")).to_have_text([f"@{alice_name}"])
    expect(alice.page.locator("#timeline .message.mentions-me")).to_have_count(1)
    alice.screenshot("mention")


def test_members_are_added_and_removed_and_people_leave(open_chat, user):
    alice_name, _ = user("alice")
    bob_name, _ = user("bob")
    carol_name, _ = user("carol")
    alice = open_chat()
    alice.log_in(alice_name)
    bob = open_chat(PHONE)
    bob.log_in(bob_name)
    carol = open_chat(PHONE)
    carol.log_in(carol_name)

    alice.create_room("team", private=True, members=[bob_name])
    alice.send("welcome to the team")
    bob.show_rooms()
    expect(bob.unread_badge("team")).to_have_text("1")  # pushed at once: no poll
    bob.open_room("team")
    bob.expect_texts(["welcome to the team"])

    alice.page.get_by_role("button", name="Members").click()
    expect(alice.page.locator("#member-list .member-name")).to_have_text([alice_name, bob_name])
    alice.page.get_by_label("Add a person").fill(carol_name)
    alice.page.get_by_label("Add a person").press("Enter")
    expect(alice.page.locator("#member-list .member-name")).to_have_text(
        [alice_name, bob_name, carol_name]
    )
    carol.show_rooms()
    expect(carol.room_button("team")).to_be_visible()  # at once on carol's page
    alice.page.get_by_label("Add a person").fill("nobody_here")
    alice.page.get_by_label("Add a person").press("Enter")
    expect(alice.page.locator("#member-error")).to_have_text("There is no such person.")
    alice.screenshot("members")

    # Only the creator removes people; anyone else is told so in words.
    bob.page.get_by_role("button", name="Members").click()
    expect(bob.page.locator("#member-list .member-name")).to_have_text(
        [alice_name, bob_name, carol_name]
    )
    bob.page.get_by_role("button", name=f"Remove {carol_name}").click()
    expect(bob.page.locator("#member-error")).to_have_text(
        "Only the person who created the room can remove people."
    )

    alice.page.get_by_role("button", name=f"Remove {bob_name}").click()
    expect(alice.page.locator("#member-list .member-name")).to_have_text([alice_name, carol_name])
    bob.show_rooms()
    expect(bob.room_button("team")).to_have_count(0)  # gone from bob's page at once
    expect(bob.page.locator("#room-title")).not_to_contain_text("team")

    carol.open_room("team")
    carol.page.get_by_role("button", name="Leave").click()
    carol.show_rooms()
    expect(carol.room_button("team")).to_have_count(0)
    expect(carol.page.locator("#room-title")).to_contain_text("#general")
