// Errors in words a person understands. The server's messages are written for developers
// (pydantic's "String should match pattern '^[A-Za-z0-9_-]{3,32}$'"); the page shows what to
// do instead, chosen by the error's code and the field it names. No DOM: unit-tested.

export const USERNAME_RULE = "Usernames are 3 to 32 letters, digits, _ or -.";
export const PASSWORD_RULE = "Passwords need at least 8 characters.";
export const ROOM_RULE = "Room names are 1 to 64 letters, digits, _ or -.";
export const TEXT_RULE = "A message is 1 to 4000 characters.";

const USERNAME = /^[A-Za-z0-9_-]{3,32}$/;
const ROOM = /^[A-Za-z0-9_-]{1,64}$/;

// The field a validation message names first ("username: …", "members.0: …").
const FIELD_WORDS = [
  [/^(username|user)\b/, USERNAME_RULE],
  [/^members\b/, "Members are usernames: 3 to 32 letters, digits, _ or -."],
  [/^password\b/, PASSWORD_RULE],
  [/^name\b/, ROOM_RULE],
  [/^text\b/, TEXT_RULE],
];

const CODE_WORDS = {
  network: "The server cannot be reached. Check your connection and try again.",
  unauthorized: "Wrong username or password.",
  forbidden: "You are not allowed to do that here.",
  not_found: "Not found.",
  rate_limited: "Too many at once. Wait a few seconds and try again.",
  unavailable: "The server is busy. Try again in a moment.",
  too_large: "That is too long.",
};

const CONFLICT_WORDS = {
  register: "That username is taken. Try another.",
  room: "A room with that name exists already.",
};

/**
 * Words for an ApiError or an error ack ({code, message}); `context` says what the person
 * was doing: "register", "login", "room", "member", "dm", "send".
 */
export function explain(error, context = "") {
  const code = error?.code ?? "";
  const message = String(error?.message ?? "");
  if (code === "invalid") {
    for (const [field, words] of FIELD_WORDS) if (field.test(message)) return words;
    return "That was not accepted. Check what you typed.";
  }
  if (code === "forbidden" && context === "remove") {
    return "Only the person who created the room can remove people.";
  }
  if (code === "forbidden" && context === "member") return "A direct message is for two people.";
  if (code === "conflict") return CONFLICT_WORDS[context] ?? "That exists already.";
  if (code === "not_found" && ["member", "dm"].includes(context)) return "There is no such person.";
  if (code === "unauthorized" && context !== "login" && context !== "register") {
    return "Your session has expired. Please log in again.";
  }
  return CODE_WORDS[code] ?? "Something went wrong. Try again.";
}

/** What is wrong with a username before it is sent, or "" if nothing. */
export function checkUsername(name) {
  return USERNAME.test(name) ? "" : USERNAME_RULE;
}

/** What is wrong with a room name before it is sent, or "" if nothing. */
export function checkRoomName(name) {
  return ROOM.test(name) ? "" : ROOM_RULE;
}

/** What is wrong with a password before it is sent, or "" if nothing. */
export function checkPassword(password) {
  return password.length >= 8 ? "" : PASSWORD_RULE;
}
