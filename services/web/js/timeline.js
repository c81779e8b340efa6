// One room's messages on screen, in seq order, each shown once.
//
// A message can reach us several times: live, in a join ack, in a gap fill, as the ack of our
// own send. It is shown once per seq, and our own pending message (known by its client_id until
// the server gives it a seq) turns into the confirmed one instead of appearing twice.
// User data only ever goes into the page through textContent.

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
  constructor(room, me) {
    this.room = room;
    this.me = me;
    this.bySeq = new Map(); // seq -> <li>
    this.pending = new Map(); // client_id -> <li>, our messages the server has not confirmed
    this.oldestSeq = null; // lowest seq on screen
    this.contiguousSeq = 0; // every seq from oldestSeq up to this one is on screen
    this.maxSeq = 0; // highest seq on screen; above contiguousSeq means a gap to fill
    this.hasOlder = false;

    this.el = element("div", "room-timeline");
    this.edge = element("div", "history-edge");
    this.olderButton = element("button", "secondary load-older", "Load older messages");
    this.olderButton.type = "button";
    this.list = element("ol", "messages");
    this.el.append(this.edge, this.list);
    this.setHasOlder(false);
  }

  setHasOlder(hasOlder) {
    this.hasOlder = hasOlder;
    if (hasOlder) this.edge.replaceChildren(this.olderButton);
    else this.edge.replaceChildren(element("p", "start", `This is the beginning of #${this.room}.`));
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

    if (this.oldestSeq === null) {
      this.oldestSeq = message.seq;
      this.contiguousSeq = message.seq;
    } else if (message.seq < this.oldestSeq) {
      this.oldestSeq = message.seq;
    }
    this.maxSeq = Math.max(this.maxSeq, message.seq);
    while (this.bySeq.has(this.contiguousSeq + 1)) this.contiguousSeq += 1;
    return true;
  }

  /** An empty room was joined: the next message is seq 1, anything higher is a gap. */
  markEmptyRoomSeen() {
    if (this.oldestSeq === null) this.oldestSeq = 1;
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
    const meta = element("div", "meta");
    meta.append(element("span", "author", user), " ", element("time"));
    li.append(meta, element("div", "text", text));
    return li;
  }

  #setTime(li, date) {
    const time = li.querySelector("time");
    li.dataset.time = String(date.getTime());
    time.dateTime = date.toISOString();
    time.textContent = localTime(date);
    time.title = dateTimeFormat.format(date);
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
