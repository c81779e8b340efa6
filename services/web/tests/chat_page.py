"""What a person does with the chat page, as Playwright steps, and what they see."""

from __future__ import annotations

import time
from pathlib import Path

import requests
from playwright.sync_api import Locator, Page, expect

from testkit.clients import DEFAULT_PASSWORD

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}


def api_post(base_url: str, token: str, path: str, body: dict) -> dict:
    """What another person does without a browser: a REST call of the public API."""
    r = requests.post(
        f"{base_url}/api{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    r.raise_for_status()
    return r.json()


def api_say(base_url: str, token: str, room: str, text: str) -> dict:
    """Someone posts a message over REST; the server pushes it to the room's sockets."""
    return api_post(base_url, token, f"/rooms/{room}/messages", {"text": text})


def stored_texts(base_url: str, token: str, room: str) -> list[str]:
    """The texts the server has stored in a room (its latest page), oldest first."""
    r = requests.get(
        f"{base_url}/api/rooms/{room}/messages",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    r.raise_for_status()
    return [m["text"] for m in r.json()["messages"]]


class ChatPage:
    """One person's tab. Every action goes through the page as a person would use it."""

    def __init__(self, page: Page, base_url: str, screenshots: Path) -> None:
        self.page, self.base_url, self.screenshots = page, base_url, screenshots
        self.errors: list[str] = []  # uncaught exceptions and dialogs: none should happen
        self.leave_warnings = 0  # "leave the page?" asked (unsent messages), then confirmed
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        if dialog.type == "beforeunload":
            self.leave_warnings += 1
            dialog.accept()
        else:
            self.errors.append(f"dialog: {dialog.message}")
            dialog.dismiss()

    def goto(self) -> None:
        self.page.goto(self.base_url + "/")

    # ---- account ----

    def log_in(
        self, username: str, password: str = DEFAULT_PASSWORD, *, register: bool = False
    ) -> None:
        self.page.get_by_label("Username", exact=True).fill(username)
        self.page.get_by_label("Password", exact=True).fill(password)
        name = "Register" if register else "Log in"
        self.page.get_by_role("button", name=name, exact=True).click()
        self.expect_connection("connected")
        expect(self.page.locator("#me")).to_have_text(username)

    def log_out(self) -> None:
        self.page.get_by_role("button", name="Log out").click()
        expect(self.page.get_by_label("Username", exact=True)).to_be_visible()

    # ---- rooms ----

    @property
    def room_buttons(self) -> Locator:
        return self.page.locator("#room-list [data-room]")

    def room_button(self, room: str) -> Locator:
        return self.page.locator(f'#room-list [data-room="{room}"]')

    def show_rooms(self) -> None:
        """On a phone the room list is a drawer behind the Rooms button."""
        toggle = self.page.locator("#rooms-toggle")
        if toggle.is_visible() and toggle.get_attribute("aria-expanded") != "true":
            toggle.click()

    def open_room(self, room: str) -> None:
        self.show_rooms()
        self.room_button(room).click()
        expect(self.page.locator("#room-title")).to_contain_text(f"#{room}")

    def join_public_room(self, room: str) -> None:
        """Browse public rooms and join one: it opens and becomes one of mine."""
        self.show_rooms()
        browse = self.page.locator("#browse-rooms")
        if browse.get_attribute("open") is None:
            browse.locator("summary").click()
        self.page.get_by_role("button", name=f"Join #{room}", exact=True).click()
        expect(self.page.locator("#room-title")).to_contain_text(f"#{room}")
        expect(self.room_button(room)).to_be_visible()

    def create_room(
        self, name: str, *, private: bool = False, members: list[str] | None = None
    ) -> None:
        self.show_rooms()
        self.page.locator("#new-room summary").click()
        self.page.get_by_label("Name", exact=True).fill(name)
        if private:
            self.page.get_by_label("Private", exact=True).check()
        if members:
            self.page.get_by_label("Members").fill(", ".join(members))
        self.page.get_by_role("button", name="Create").click()
        expect(self.page.locator("#room-title")).to_contain_text(f"#{name}")

    def unread_badge(self, room: str) -> Locator:
        return self.room_button(room).locator(".badge")

    # ---- messages ----

    @property
    def composer(self) -> Locator:
        return self.page.get_by_label("Message", exact=True)

    def type(self, text: str) -> None:
        """Key by key, as a person types (so the page sees input events)."""
        self.composer.press_sequentially(text)

    def send(self, text: str) -> None:
        self.composer.fill(text)
        self.composer.press("Enter")

    @property
    def messages(self) -> Locator:
        return self.page.locator("#timeline .message")

    @property
    def message_texts(self) -> Locator:
        return self.page.locator("#timeline .message .text")

    def shown(self) -> list[dict]:
        """Every message on screen, top to bottom: seq (None while pending), author, text."""
        return self.page.locator("#timeline .message").evaluate_all(
            """els => els.map(el => ({
                seq: el.dataset.seq ? Number(el.dataset.seq) : null,
                user: el.querySelector('.author').textContent,
                text: el.querySelector('.text').textContent,
                pending: el.classList.contains('pending'),
                continued: el.classList.contains('continued'),
            }))"""
        )

    def expect_texts(self, texts: list[str]) -> None:
        """Exactly these messages, once each, in this order (waits for the page to get there)."""
        expect(self.message_texts).to_have_text(texts, use_inner_text=False)

    def expect_all_confirmed(self) -> None:
        """No message of ours is still waiting for the server."""
        expect(self.page.locator("#timeline .message.pending")).to_have_count(0)

    def expect_connection(self, state: str) -> None:
        expect(self.page.locator("#connection")).to_have_attribute("data-state", state)

    # ---- scrolling ----

    def scroll_to_top(self) -> None:
        self.page.locator("#timeline").evaluate("el => { el.scrollTop = 0; }")

    def scroll_top(self) -> float:
        return self.page.locator("#timeline").evaluate("el => el.scrollTop")

    def warns_before_closing(self) -> bool:
        """Whether closing the tab now would ask first (the page cancels beforeunload)."""
        return self.page.evaluate(
            """() => {
                const e = new Event('beforeunload', {cancelable: true});
                window.dispatchEvent(e);
                return e.defaultPrevented;
            }"""
        )

    def wait_for_value(self, expression: str, expected: object, timeout: float = 10.0) -> None:
        """Poll `expression` in the page until it equals `expected`; AssertionError past `timeout`.

        Not `page.wait_for_function`: Playwright polls a string predicate by evaluating it
        inside the page, which the page's CSP (no 'unsafe-eval') refuses whenever the first
        check is false. `page.evaluate` runs through the DevTools protocol, outside the CSP.
        """
        deadline = time.monotonic() + timeout
        value = self.page.evaluate(expression)
        while value != expected and time.monotonic() < deadline:
            self.page.wait_for_timeout(100)
            value = self.page.evaluate(expression)
        assert value == expected, f"{expression} is {value!r}, not {expected!r}, after {timeout} s"

    def screenshot(self, name: str) -> Path:
        width = self.page.viewport_size["width"]
        path = self.screenshots / f"{name}-{width}px.png"
        self.page.screenshot(path=str(path), animations="disabled")
        return path
