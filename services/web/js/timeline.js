// One room's messages on screen, in seq order, each shown once. Which seqs are held and where
// the gaps are is sync.js's (RoomLog); this is the DOM.
//
// A message can reach us several times: live, in a join ack, in a gap fill, as the ack of our
// own send. It is shown once per seq, and our own pending message (known by its client_id until
// the server gives it a seq) turns into the confirmed one instead of appearing twice.
// User data only ever goes into the page through textContent (rich.js builds links and
// mentions as nodes).

import { render } from "./rich.js";
import { mentions } from "./sync.js";

// Consecutive messages by one author within this window share one author line.
const GROUP_WINDOW_MS = 5 * 60 * 1000;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function localTime(date) {
  const today = new Date().toDateString() === date.toDateString();
  return today ? timeFormat.format(date) : dateTimeFormat.format(date);
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

export class Timeline {
  /** title: how the room is named in "This is the beginning of …" (#room, or a DM's words). */
  constructor(title, me) {
    this.title = title;
    this.me = me;
    this.bySeq = new Map(); // seq -> <li>
    this.pending = new Map(); // client_id -> <li>, our messages the server has not confirmed

    this.el = element("div", "room-timeline");
    this.edge = element("div", "history-edge");
    this.olderButton = element("button", "secondary load-older", "Load older messages");
    this.olderButton.type = "button";
    this.list = element("ol", "messages");
    this.el.append(this.edge, this.list);
    this.setHasOlder(false);
  }

  setHasOlder(hasOlder) {
    if (hasOlder) this.edge.replaceChildren(this.olderButton);
    else this.edge.replaceChildren(element("p", "start", `This is the beginning of ${this.title}.`));
  }

  /** Show a message from the server; false if it was already on screen. */
  add(message) {
    if (this.bySeq.has(message.seq)) return false;
    let li = message.client_id ? this.pending.get(message.client_id) : undefined;
    if (li) {
      this.pending.delete(message.client_id);
      li.classList.remove("pending", "failed");
      li.querySelector(".status")?.remove();
    } else {
      li = this.#render(message.user, message.text);
    }
    li.dataset.seq = String(message.seq);
    this.#setTime(li, new Date(message.created_at));
    this.bySeq.set(message.seq, li);
    this.#insertBySeq(li, message.seq);
    return true;
  }

  /** Our own message, shown at once and marked as sending until the server confirms it. */
  addPending(clientId, text) {
    const li = this.#render(this.me, text);
    li.classList.add("pending");
    li.dataset.clientId = clientId;
    li.append(element("span", "status", "sending…"));
    this.#setTime(li, new Date());
    this.pending.set(clientId, li);
    this.list.append(li);
    this.#regroup(li);
    return li;
  }

  markFailed(clientId, reason) {
    const li = this.pending.get(clientId);
    if (!li) return;
    li.classList.add("failed");
    const status = li.querySelector(".status");
    status.replaceChildren(element("span", "", `not sent: ${reason} `));
    const retry = element("button", "link retry", "Retry");
    retry.type = "button";
    retry.dataset.clientId = clientId;
    status.append(retry);
  }

  markSending(clientId) {
    const li = this.pending.get(clientId);
    if (!li) return;
    li.classList.remove("failed");
    li.querySelector(".status").replaceChildren("sending…");
  }

  #render(user, text) {
    const li = element("li", "message");
    li.dataset.user = user;
    if (user === this.me) li.classList.add("mine");
    else if (mentions(text, this.me)) li.classList.add("mentions-me");
    const meta = element("div", "meta");
    meta.append(element("span", "author", user), " ", element("time"));
    // dir="auto": a line in Arabic or Hebrew runs right to left, each message on its own.
    const body = element("div", "text");
    body.dir = "auto";
    body.replaceChildren(...render(text, this.me));
    li.append(meta, body);
    return li;
  }

  #setTime(li, date) {
    const time = li.querySelector("time");
    li.dataset.time = String(date.getTime());
    time.dateTime = date.toISOString();
    time.textContent = localTime(date);
    time.title = dateTimeFormat.format(date);
    // A continued message hides its author line: its time is shown on hover instead.
    li.title = dateTimeFormat.format(date);
  }

  // Confirmed messages in seq order, then our pending ones in the order they were typed.
  #insertBySeq(li, seq) {
    let after = this.list.lastElementChild;
    while (after && (after === li || !after.dataset.seq || Number(after.dataset.seq) > seq)) {
      after = after.previousElementSibling;
    }
    const before = after ? after.nextElementSibling : this.list.firstElementChild;
    const next = li.nextElementSibling;
    if (before !== li) this.list.insertBefore(li, before);
    this.#regroup(li);
    if (next) this.#regroup(next);
  }

  // A message continues the group of the one above when the author is the same and little
  // time has passed; its author line is then shown to screen readers only.
  #regroup(li) {
    for (const el of [li, li.nextElementSibling]) {
      if (!el) continue;
      const prev = el.previousElementSibling;
      const continued = Boolean(prev) && prev.dataset.user === el.dataset.user
        && Math.abs(Number(el.dataset.time) - Number(prev.dataset.time)) < GROUP_WINDOW_MS;
      el.classList.toggle("continued", continued);
    }
  }
}
