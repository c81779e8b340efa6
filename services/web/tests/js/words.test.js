// Server errors shown in words, never as a regular expression.
// Run: node --test services/web/tests/js/

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { checkPassword, checkRoomName, checkUsername, explain } from "../../js/words.js";

describe("errors in words", () => {
  const cases = [
    [{ code: "invalid", message: "username: String should match pattern '^[A-Za-z0-9_-]{3,32}$'" },
      "register", "Usernames are 3 to 32 letters, digits, _ or -."],
    [{ code: "invalid", message: "password: String should have at least 8 characters" },
      "register", "Passwords need at least 8 characters."],
    [{ code: "invalid", message: "name: String should match pattern '^[A-Za-z0-9_-]{1,64}$'" },
      "room", "Room names are 1 to 64 letters, digits, _ or -."],
    [{ code: "invalid", message: "members.0: String should match pattern '^[A-Za-z0-9_-]{3,32}$'" },
      "room", "Members are usernames: 3 to 32 letters, digits, _ or -."],
    [{ code: "invalid", message: "payload: something odd ^[a]$" }, "room",
      "That was not accepted. Check what you typed."],
    [{ code: "conflict", message: "username taken" }, "register", "That username is taken. Try another."],
    [{ code: "unauthorized", message: "bad credentials" }, "login", "Wrong username or password."],
    [{ code: "not_found", message: "no user zed" }, "dm", "There is no such person."],
    [{ code: "forbidden", message: "only the room's creator may remove other members" }, "remove",
      "Only the person who created the room can remove people."],
    [{ code: "network", message: "the server cannot be reached" }, "login",
      "The server cannot be reached. Check your connection and try again."],
  ];
  for (const [error, context, words] of cases) {
    it(`${error.code} while ${context}: ${words}`, () => {
      const shown = explain(error, context);
      assert.equal(shown, words);
      assert.doesNotMatch(shown, /[\^$\\[\]{}]/); // nothing that looks like a regex
    });
  }

  it("checks names and passwords before they are sent", () => {
    assert.equal(checkUsername("bo"), "Usernames are 3 to 32 letters, digits, _ or -.");
    assert.equal(checkUsername("bob_the-2nd"), "");
    assert.equal(checkRoomName("a room"), "Room names are 1 to 64 letters, digits, _ or -.");
    assert.equal(checkRoomName("team-1"), "");
    assert.equal(checkPassword("short"), "Passwords need at least 8 characters.");
  });
});
