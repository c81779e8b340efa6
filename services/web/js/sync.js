// The chat's state and its sync with the server, with no DOM: which rooms are mine, what each
// holds (by seq, without gaps), what is read, what is still to send. It speaks the public
// contract (docs/API.md) through a Socket.IO socket and a REST object, and tells a `view` what
// changed; app.js renders. Unit-tested by node's test runner (tests/js/sync.test.js).

// A lost ack is given up on after this long; the message stays in the outbox and is re-sent
// (same client_id, so the server stores it once) when the connection is back.
export const ACK_TIMEOUT_MS = 10_000;
// Refused as rate_limited or unavailable: try again after a pause, like a person would.
export const RETRY_DELAY_MS = 2_000;
// "typing" is shown this long after the last one (the sender repeats it every 2.5 s).
export const TYPING_SHOW_MS = 4_000;
// A live message whose seq jumps past the next one waits this long for frames already in
// flight before the gap is fetched.
export const GAP_WAIT_MS = 300;
// History pages: the server's maximum per request for gap fills, a screenful for scroll-back.
export const FILL_PAGE = 100;
export const OLDER_PAGE = 50;
// New messages of a room we are not joined to, fetched to decide on a notification: a hidden
// tab needs the few newest only.
export const NOTIFY_PAGE = 20;

// `@name` as the server spells usernames, not inside a word or an e-mail address.
export const MENTION = /(^|[^A-Za-z0-9_@.-])@([A-Za-z0-9_-]{3,32})(?![A-Za-z0-9_-])/g;

/** The usernames `@mentioned` in a text, lower-cased, in order of appearance. */
export function mentionsOf(text) {
  return [...text.matchAll(MENTION)].map((m) => m[2].toLowerCase());
}

/** Whether a text mentions `user` (usernames are unique case-insensitively). */
export function mentions(text, user) {
  return mentionsOf(text).includes(user.toLowerCase());
}

/** How a room is named to a person: a DM by the other person, other rooms as #name. */
export function displayName(room, me) {
  if (room.kind === "dm") {
    const other = (room.members ?? []).find((m) => m.toLowerCase() !== me.toLowerCase());
    return other ?? me; // a DM with yourself: your notes
  }
  return `#${room.name}`;
}

/** Which seqs of a room we hold: the lowest, the highest, and up to where there is no hole. */
export class RoomLog {
  constructor() {
    this.seqs = new Set();
    this.oldestSeq = null; // lowest seq held (1 once an empty room was joined)
    this.contiguousSeq = 0; // every seq from oldestSeq up to this one is held
    this.maxSeq = 0; // highest seq held; above contiguousSeq means a gap to fill
  }

  get known() {
    return this.oldestSeq !== null;
  }

  get hasGap() {
    return this.contiguousSeq < this.maxSeq;
  }

  /** Records a message's seq; false if it was already held. */
  add(seq) {
    if (this.seqs.has(seq)) return false;
    this.seqs.add(seq);
    if (this.oldestSeq === null) {
      this.oldestSeq = seq;
      this.contiguousSeq = seq;
    } else if (seq < this.oldestSeq) {
      this.oldestSeq = seq;
    }
    this.maxSeq = Math.max(this.maxSeq, seq);
    while (this.seqs.has(this.contiguousSeq + 1)) this.contiguousSeq += 1;
    return true;
  }

  /** An empty room was joined: the next message is seq 1, anything higher is a gap. */
  markEmpty() {
    if (this.oldestSeq === null) {
      this.oldestSeq = 1;
      this.contiguousSeq = 0;
    }
  }
}

/** The outbox kept in storage (localStorage): survives a reload or a closed tab. */
export class StoredOutbox {
  constructor(storage, user) {
    this.storage = storage;
    this.key = `chat.outbox.${user}`;
  }

  load() {
    try {
      const items = JSON.parse(this.storage.getItem(this.key) || "[]");
      return Array.isArray(items)
        ? items.filter((i) => i && typeof i.room === "string" && typeof i.text === "string"
          && typeof i.client_id === "string")
        : [];
    } catch {
      return [];
    }
  }

  // Read-modify-write: another tab of the same person may have added its own items meanwhile.
  add(item) {
    const items = this.load().filter((i) => i.client_id !== item.client_id);
    items.push({ room: item.room, text: item.text, client_id: item.client_id });
    this.#save(items);
  }

  remove(clientId) {
    const items = this.load();
    const kept = items.filter((i) => i.client_id !== clientId);
    if (kept.length !== items.length) this.#save(kept);
  }

  #save(items) {
    try {
      if (items.length) this.storage.setItem(this.key, JSON.stringify(items));
      else this.storage.removeItem(this.key);
    } catch {
      // Storage full or refused (private mode): the message is still sent from memory.
    }
  }
}

function newClientId(random) {
  const bytes = random(16);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const noop = () => {};

export class ChatSync {
  /**
   * me: the username. socket: a socket.io-client Socket (or the same shape: on, emit,
   * timeout(ms).emitWithAck, connected). rest: {listRooms(), roomMessages(room, query)}.
   * storage: a localStorage-like object. view: callbacks, all optional (see #emitView uses).
   */
  constructor({ me, socket, rest, storage, view = {}, timers = globalThis, random }) {
    this.me = me;
    this.socket = socket;
    this.rest = rest;
    this.view = view;
    this.timers = timers;
    this.random = random ?? ((n) => globalThis.crypto.getRandomValues(new Uint8Array(n)));
    this.rooms = new Map(); // name -> room state, see #room()
    this.current = null; // the open room's state
    this.hidden = false; // the page is not being looked at: nothing is read, notifications go out
    this.notifyWanted = () => false; // set by the app: whether a notification could be shown
    this.stored = new StoredOutbox(storage, me);
    this.outbox = []; // {room, text, client_id, failed?}: not yet acknowledged, oldest first
    this.flushing = new Set(); // rooms whose outbox is being sent
    this.reading = new Set(); // rooms with a `read` in flight
    this.connectedOnce = false;
    this.#listen();
  }

  // An ack that is not an object (a server that does not know the event answers nothing
  // useful) reads as a refusal, never as an exception.
  async #call(event, payload) {
    const ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
    return ack && typeof ack === "object"
      ? ack : { ok: false, error: { code: "invalid", message: `no answer to ${event}` } };
  }

  #tell(name, ...args) {
    (this.view[name] ?? noop).apply(this.view, args);
  }

  // ---- start ----------------------------------------------------------------------------------

  /** The room list (once; afterwards everything comes over the socket) and the stored outbox. */
  async start() {
    for (const item of this.stored.load()) {
      if (this.outbox.some((i) => i.client_id === item.client_id)) continue;
      this.outbox.push(item);
      const room = this.#room(item.room);
      room.wanted = true; // joined at connect so the message can go
      this.#tell("pendingAdded", room, item);
    }
    await this.refreshRooms();
  }

  /** Reads my rooms; with `prune`, a room of mine the server no longer lists goes. */
  async refreshRooms({ prune = false } = {}) {
    try {
      const { rooms } = await this.rest.listRooms();
      for (const info of rooms) this.#room(info.name, info);
      if (prune) {
        const listed = new Set(rooms.map((r) => r.name));
        for (const room of [...this.rooms.values()]) {
          if (room.member && !listed.has(room.name)) this.#removed(room.name);
        }
      }
      this.#tell("roomsChanged");
    } catch (err) {
      this.#tell("apiFailed", err);
    }
  }

  // ---- socket events --------------------------------------------------------------------------

  #listen() {
    const s = this.socket;
    s.on("connect", () => this.#connected());
    s.on("disconnect", () => {
      // Who is online is unknown until the re-join brings a fresh list.
      for (const room of this.rooms.values()) Object.assign(room, { joined: false, online: [] });
      this.#tell("presenceChanged", this.current);
      this.#tell("connectionChanged", "disconnected");
    });
    s.on("message", (message) => this.#received(message));
    s.on("room", (info) => this.#roomEvent(info));
    s.on("room_removed", ({ room }) => this.#removed(room));
    s.on("read", ({ room, last_read_seq: seq }) => {
      const state = this.rooms.get(room);
      if (!state || seq <= state.lastReadSeq) return;
      state.lastReadSeq = seq;
      this.#tell("roomsChanged");
    });
    s.on("presence", ({ room, users }) => {
      const state = this.rooms.get(room);
      if (!state) return;
      state.online = users;
      if (state === this.current) this.#tell("presenceChanged", state);
    });
    s.on("typing", ({ room, user }) => this.#someoneTyping(room, user));
  }

  async #connected() {
    this.#tell("connectionChanged", "connected");
    // After a disconnect the `room`/`room_removed`/`read` events of the gap are lost: one
    // catch-up read, before the re-joins, so a room left meanwhile is not joined again.
    if (this.connectedOnce) await this.refreshRooms({ prune: true });
    this.connectedOnce = true;
    if (!this.socket.connected) return; // dropped again meanwhile: the next connect does it
    for (const room of this.rooms.values()) {
      if (room.wanted) this.#join(room);
      if (room.readOwed) this.#sendRead(room);
    }
  }

  async #join(room) {
    const payload = { room: room.name };
    const firstJoin = !room.log.known;
    if (!firstJoin) payload.since = room.log.contiguousSeq;
    let ack;
    try {
      ack = await this.#call("join", payload);
    } catch {
      return; // no answer: the next connect joins again
    }
    if (!ack.ok) {
      room.error = ack.error;
      if (["forbidden", "not_found"].includes(ack.error.code)) {
        this.#refuseOutbox(room, ack.error);
        if (room.member) this.#removed(room.name);
      }
      this.#tell("roomChanged", room);
      return;
    }
    room.joined = true;
    room.error = null;
    if (!room.member) {
      room.member = true; // joining a public room makes us a member
      this.#tell("roomsChanged");
    }
    const messages = ack.messages ?? [];
    if (firstJoin) {
      room.hasOlder = messages.length > 0 && messages[0].seq > 1;
      if (messages.length === 0) room.log.markEmpty();
      this.#tell("historyChanged", room);
    }
    this.#addAll(room, messages, false);
    if (ack.more || room.log.hasGap) await this.#fillGap(room);
    if (room === this.current) this.#readIfLooking(room);
    this.#flush(room);
  }

  // Everything after the last seq we hold without holes, page by page, until we are level.
  async #fillGap(room) {
    if (room.filling) return;
    room.filling = true;
    try {
      for (;;) {
        const page = await this.rest.roomMessages(room.name,
          { after: room.log.contiguousSeq, limit: FILL_PAGE });
        const before = room.log.contiguousSeq;
        this.#addAll(room, page.messages, false);
        if (!page.more || room.log.contiguousSeq === before) break;
      }
    } catch (err) {
      this.#tell("apiFailed", err); // the next message or reconnect tries again
    } finally {
      room.filling = false;
    }
  }

  #received(message) {
    const room = this.#room(message.room);
    const added = this.#addAll(room, [message], true);
    if (added.length) room.typing.delete(message.user);
    // A seq beyond the next one means we missed some: fetch them once in-flight events landed.
    if (room.joined && room.log.hasGap) {
      this.timers.clearTimeout(room.gapTimer);
      room.gapTimer = this.timers.setTimeout(() => this.#fillGap(room), GAP_WAIT_MS);
    }
  }

  /** Adds messages from the server; returns the ones not held before. */
  #addAll(room, messages, live) {
    const added = [];
    for (const message of messages) {
      room.lastSeq = Math.max(room.lastSeq, message.seq);
      if (message.user === this.me && message.client_id) this.#settled(message.client_id);
      // The server moves the sender's read position to their own message.
      if (message.user === this.me) room.lastReadSeq = Math.max(room.lastReadSeq, message.seq);
      if (room.log.add(message.seq)) added.push(message);
    }
    if (added.length) {
      this.#tell("messagesAdded", room, added, { live });
      if (live) for (const message of added) this.#maybeNotify(room, message);
    }
    if (room === this.current) this.#readIfLooking(room);
    this.#tell("roomsChanged");
    return added;
  }

  #roomEvent(info) {
    const known = this.rooms.get(info.name);
    const before = known?.lastSeq ?? 0;
    const wasMember = known?.member ?? false;
    const room = this.#room(info.name, info);
    if (!wasMember) this.#tell("roomAdded", room);
    // News of a room this socket is not joined to: a notification may be owed.
    if (!room.joined && room.lastSeq > before && this.hidden && this.notifyWanted()) {
      this.#notifyFromRest(room, before);
    }
    if (room === this.current) this.#readIfLooking(room);
    this.#tell("roomsChanged");
  }

  // One read at a time per room: `room` events that arrive meanwhile (a busy room sends one a
  // second at most) are covered by one more read when it returns, from where it ended.
  async #notifyFromRest(room, afterSeq) {
    if (room.checking) {
      room.checkAgain = true; // from where the running read ends, not from afterSeq
      return;
    }
    room.checkedSeq = Math.max(room.checkedSeq, afterSeq);
    room.checking = true;
    try {
      do {
        room.checkAgain = false;
        const after = Math.max(room.checkedSeq, room.lastSeq - NOTIFY_PAGE);
        if (after >= room.lastSeq) break;
        const page = await this.rest.roomMessages(room.name, { after, limit: NOTIFY_PAGE });
        for (const message of page.messages) {
          this.#maybeNotify(room, message);
          room.checkedSeq = Math.max(room.checkedSeq, message.seq);
        }
        if (!page.messages.length) break;
      } while (room.checkAgain && this.hidden);
    } catch (err) {
      this.#tell("apiFailed", err);
    } finally {
      room.checking = false;
    }
  }

  #maybeNotify(room, message) {
    if (!this.hidden || message.user === this.me) return;
    if (message.seq <= room.notifiedSeq || message.seq <= room.lastReadSeq) return;
    const reason = room.kind === "dm" ? "dm" : mentions(message.text, this.me) ? "mention" : null;
    if (!reason) return;
    room.notifiedSeq = message.seq;
    this.#tell("notify", room, message, reason);
  }

  #removed(name) {
    const room = this.rooms.get(name);
    if (!room) return;
    this.rooms.delete(name);
    this.#refuseOutbox(room, { code: "forbidden", message: "you are no longer in this room" });
    if (this.current === room) this.current = null;
    this.#tell("roomRemoved", room);
    this.#tell("roomsChanged");
  }

  #someoneTyping(name, user) {
    const room = this.rooms.get(name);
    if (!room || user === this.me) return;
    const until = Date.now() + TYPING_SHOW_MS;
    room.typing.set(user, until);
    if (room === this.current) this.#tell("typingChanged", room);
    this.timers.setTimeout(() => {
      if ((room.typing.get(user) ?? 0) <= Date.now()) room.typing.delete(user);
      if (room === this.current) this.#tell("typingChanged", room);
    }, TYPING_SHOW_MS + 50);
  }

  // ---- rooms ----------------------------------------------------------------------------------

  #room(name, info = {}) {
    let room = this.rooms.get(name);
    if (!room) {
      room = {
        name, kind: "public", private: false, members: null, creator: null,
        lastSeq: 0, lastReadSeq: 0, member: false, wanted: false, joined: false,
        log: new RoomLog(), hasOlder: false, online: [], typing: new Map(), error: null,
        notifiedSeq: 0, checkedSeq: 0, checking: false, checkAgain: false, readOwed: false,
      };
      this.rooms.set(name, room);
    }
    if (info.name !== undefined) room.member = true; // the server told us of it: ours
    if (info.kind !== undefined) room.kind = info.kind;
    else if (info.private !== undefined) room.kind = info.private ? "private" : "public";
    if (info.private !== undefined) room.private = info.private;
    if (info.members !== undefined) room.members = info.members;
    const creator = info.creator ?? info.created_by ?? info.owner;
    if (creator !== undefined) room.creator = creator;
    if (info.last_seq !== undefined) room.lastSeq = Math.max(room.lastSeq, info.last_seq);
    if (info.last_read_seq !== undefined) {
      room.lastReadSeq = Math.max(room.lastReadSeq, info.last_read_seq);
    } else if (info.unread !== undefined) {
      room.lastReadSeq = Math.max(room.lastReadSeq, room.lastSeq - info.unread);
    }
    return room;
  }

  /** My rooms (the ones whose unread counts count), DMs and rooms in name order. */
  myRooms() {
    return [...this.rooms.values()].filter((r) => r.member || r.wanted);
  }

  unread(room) {
    return Math.max(0, room.lastSeq - room.lastReadSeq);
  }

  /** Unread messages in all my rooms; the open room counts only while the page is hidden. */
  totalUnread() {
    let total = 0;
    for (const room of this.myRooms()) {
      if (room === this.current && !this.hidden) continue;
      total += this.unread(room);
    }
    return total;
  }

  /** Opens a room: joined (kept joined afterwards, so its counts rise live) and read. */
  open(name) {
    const room = this.#room(name);
    this.current = room;
    if (!room.wanted) {
      room.wanted = true;
      if (this.socket.connected) this.#join(room);
    }
    this.#readIfLooking(room);
    this.#tell("roomsChanged");
    return room;
  }

  /** The page became visible or hidden. */
  setHidden(hidden) {
    this.hidden = hidden;
    if (!hidden && this.current) this.#readIfLooking(this.current);
    this.#tell("roomsChanged");
  }

  /** We left the room (DELETE …/members/me): it goes now; the server's room_removed follows. */
  leave(name) {
    if (this.socket.connected) this.socket.emit("leave", { room: name });
    this.#removed(name);
  }

  /** A room created or found by REST (POST /api/rooms, POST /api/dms): ours now. */
  adopt(info) {
    const room = this.#room(info.name, info);
    this.#tell("roomsChanged");
    return room;
  }

  // Read state lives on the server: what the reader has on screen is sent as `read`.
  #readIfLooking(room) {
    if (this.hidden || room !== this.current || !room.member) return;
    const seq = Math.max(room.lastSeq, room.log.maxSeq);
    if (seq <= room.lastReadSeq && !room.readOwed) return;
    room.lastReadSeq = Math.max(room.lastReadSeq, seq);
    room.readOwed = true;
    this.#sendRead(room);
  }

  // At most one `read` in flight per room; a newer position is sent when it returns.
  async #sendRead(room) {
    if (this.reading.has(room.name) || !this.socket.connected) return;
    this.reading.add(room.name);
    try {
      while (room.readOwed && this.socket.connected) {
        room.readOwed = false;
        const seq = room.lastReadSeq;
        let ack;
        try {
          ack = await this.#call("read", { room: room.name, seq });
        } catch {
          room.readOwed = true; // no answer: sent again at the next connect
          return;
        }
        if (ack.ok && ack.last_read_seq > room.lastReadSeq) {
          room.lastReadSeq = ack.last_read_seq;
          this.#tell("roomsChanged");
        }
      }
    } finally {
      this.reading.delete(room.name);
    }
  }

  async loadOlder(room = this.current) {
    if (!room || !room.hasOlder || room.loadingOlder || !room.log.known) return [];
    room.loadingOlder = true;
    try {
      const page = await this.rest.roomMessages(room.name,
        { before: room.log.oldestSeq, limit: OLDER_PAGE });
      const added = this.#addAll(room, page.messages, false);
      room.hasOlder = page.more;
      this.#tell("historyChanged", room);
      return added;
    } catch (err) {
      this.#tell("apiFailed", err);
      return [];
    } finally {
      room.loadingOlder = false;
    }
  }

  // ---- messages out ---------------------------------------------------------------------------

  /** Queues a message for a room; null if there is nothing to send. */
  send(name, text) {
    const trimmed = text.trim();
    if (!trimmed) return null;
    const room = this.#room(name);
    const item = { room: name, text: trimmed, client_id: newClientId(this.random) };
    this.outbox.push(item);
    this.stored.add(item);
    this.#tell("pendingAdded", room, item);
    this.#flush(room);
    return item;
  }

  /** Messages typed but not yet acknowledged by the server (what a closing tab would lose). */
  get unsent() {
    return this.outbox.filter((i) => !i.failed).length;
  }

  #settled(clientId) {
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((i) => i.client_id !== clientId);
    if (this.outbox.length !== before) this.#tell("outboxChanged");
    this.stored.remove(clientId);
  }

  // Sends a room's pending messages one at a time, in the order they were typed.
  async #flush(room) {
    if (this.flushing.has(room.name)) return;
    this.flushing.add(room.name);
    try {
      for (;;) {
        const item = this.outbox.find((i) => i.room === room.name && !i.failed);
        if (!item || !this.socket.connected || !room.joined) return;
        if (!(await this.#transmit(room, item))) return;
      }
    } finally {
      this.flushing.delete(room.name);
    }
  }

  // One attempt; true when the message is settled (confirmed, or refused for good).
  async #transmit(room, item) {
    let ack;
    try {
      ack = await this.#call("message",
        { room: item.room, text: item.text, client_id: item.client_id });
    } catch {
      if (this.socket.connected) this.timers.setTimeout(() => this.#flush(room), RETRY_DELAY_MS);
      return false; // otherwise re-sent after the reconnect's join
    }
    if (ack.ok) {
      this.#received(ack.message);
      return true;
    }
    if (["rate_limited", "unavailable"].includes(ack.error.code)) {
      this.timers.setTimeout(() => this.#flush(room), RETRY_DELAY_MS);
      return false;
    }
    this.#fail(room, item, ack.error);
    return true;
  }

  #fail(room, item, error) {
    item.failed = true;
    this.stored.remove(item.client_id); // a reload would only be refused again
    this.#tell("sendFailed", room, item, error);
    this.#tell("outboxChanged");
  }

  #refuseOutbox(room, error) {
    for (const item of this.outbox) {
      if (item.room === room.name && !item.failed) this.#fail(room, item, error);
    }
  }

  retry(clientId) {
    const item = this.outbox.find((i) => i.client_id === clientId);
    if (!item) return;
    item.failed = false;
    this.stored.add(item);
    const room = this.#room(item.room);
    this.#tell("sendRetrying", room, item);
    this.#tell("outboxChanged");
    this.#flush(room);
  }

  /** "typing" for the open room, when joined and connected. */
  typing() {
    const room = this.current;
    if (!room?.joined || !this.socket.connected) return;
    this.socket.emit("typing", { room: room.name });
  }
}
