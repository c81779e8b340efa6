// The chat once logged in: rooms, the open room's timeline, sending, presence, typing, and
// staying in sync across disconnects. Speaks only the public REST + Socket.IO contract.

import * as api from "./api.js";
import { Timeline } from "./timeline.js";

// A lost ack is given up on after this long; the message stays pending and is re-sent (same
// client_id, so the server stores it once) when the connection is back.
const ACK_TIMEOUT_MS = 10_000;
// Refused as rate_limited or unavailable: try again after a pause, like a person would.
const RETRY_DELAY_MS = 2_000;
// "typing" is sent at most this often while someone types...
const TYPING_SEND_INTERVAL_MS = 2_500;
// ...and shown this long after the last one, longer than the send interval so it does not flicker.
const TYPING_SHOW_MS = 4_000;
// Rooms we have not joined get their unread counts from the room list, refreshed this often.
const ROOM_LIST_REFRESH_MS = 20_000;
// Scrolling closer than this to the top loads the previous page of history.
const LOAD_OLDER_MARGIN_PX = 120;
// History pages: the server's maximum per request for gap fills, a screenful for scroll-back.
const FILL_PAGE = 100;
const OLDER_PAGE = 50;

const $ = (id) => document.getElementById(id);

function newClientId() {
  // crypto.randomUUID needs a secure context; plain http on a LAN name is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class ChatApp {
  constructor({ token, user, onLogout }) {
    this.token = token;
    this.user = user;
    this.onLogout = onLogout;
    this.rooms = new Map(); // name -> room state, see #room()
    this.current = null;
    this.outbox = []; // our messages without a server ack, oldest first
    this.flushing = new Set(); // rooms whose outbox is being sent
    this.lastTypingSent = 0;
    this.readKey = `chat.lastRead.${user}`;
    this.lastRead = JSON.parse(localStorage.getItem(this.readKey) || "{}");
    this.el = {
      connection: $("connection"), roomList: $("room-list"), title: $("room-title"),
      online: $("online"), timeline: $("timeline"), typing: $("typing"),
      text: $("composer-text"), sendButton: document.querySelector("#composer button"),
      announce: $("announce"), sidebar: $("sidebar"),
      toggle: $("rooms-toggle"), toggleUnread: $("rooms-toggle-unread"),
    };
  }

  async start() {
    $("me").textContent = this.user;
    this.#bindUi();
    this.#connect();
    await this.refreshRooms();
    const wanted = sessionStorage.getItem("chat.room");
    this.open(this.rooms.has(wanted) ? wanted : this.rooms.has("general") ? "general"
      : this.rooms.keys().next().value ?? "general");
    this.refreshTimer = setInterval(() => this.refreshRooms(), ROOM_LIST_REFRESH_MS);
  }

  // ---- connection -------------------------------------------------------------------------

  #connect() {
    // WebSocket only: no long-polling session that would need sticky routing behind nginx.
    // WebSocket first; where a proxy or network refuses it, fall back to long-polling
    // (nginx keeps a polling session on one worker with its affinity cookie).
    this.socket = io({
      auth: { token: this.token },
      transports: ["websocket", "polling"],
      tryAllTransports: true,
    });
    const s = this.socket;
    s.on("connect", () => {
      this.#setConnection("connected");
      for (const room of this.rooms.values()) if (room.wanted) this.#join(room);
      this.refreshRooms();
    });
    s.on("disconnect", () => {
      // Who is online is unknown until the re-join brings a fresh list.
      for (const room of this.rooms.values()) Object.assign(room, { joined: false, online: [] });
      if (this.current) this.#renderOnline();
      this.#setConnection(navigator.onLine ? "reconnecting" : "offline");
    });
    s.on("connect_error", (err) => {
      if (err.message === "unauthorized") {
        this.onLogout("Your session has expired. Please log in again.");
      } else if (!s.active) {
        // Refused by the server (e.g. too many connections): the client will not retry itself.
        this.#setConnection("reconnecting");
        setTimeout(() => s.connect(), RETRY_DELAY_MS * 2);
      } else {
        this.#setConnection(navigator.onLine ? "reconnecting" : "offline");
      }
    });
    s.on("session", ({ node }) => { this.el.connection.title = `served by ${node}`; });
    s.on("message", (message) => this.#received(message, true));
    s.on("presence", ({ room, users }) => {
      const state = this.rooms.get(room);
      if (!state) return;
      state.online = users;
      if (state === this.current) this.#renderOnline();
    });
    s.on("typing", ({ room, user }) => this.#someoneTyping(room, user));

    window.addEventListener("offline", () => {
      // The browser knows the network is gone: do not wait for a ping timeout to notice.
      this.#setConnection("offline");
      s.io.engine?.close();
    });
    window.addEventListener("online", () => {
      if (!s.connected) this.#setConnection("reconnecting");
    });
  }

  #setConnection(state) {
    const labels = { connected: "connected", reconnecting: "reconnecting…", offline: "offline" };
    this.el.connection.dataset.state = state;
    this.el.connection.textContent = labels[state];
  }

  async #join(room) {
    const payload = { room: room.name };
    const tl = room.timeline;
    const firstJoin = tl.oldestSeq === null;
    if (!firstJoin) payload.since = tl.contiguousSeq;
    let ack;
    try {
      ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck("join", payload);
    } catch {
      return; // no answer: the next connect joins again
    }
    if (!ack.ok) {
      room.error = ack.error.message;
      if (room === this.current) this.#renderHeader();
      return;
    }
    room.joined = true;
    room.error = null;
    this.#addAll(room, ack.messages);
    if (firstJoin) {
      tl.setHasOlder(ack.messages.length > 0 && ack.messages[0].seq > 1);
      if (ack.messages.length === 0) tl.markEmptyRoomSeen();
      if (room === this.current) this.#scrollToBottom();
    }
    if (ack.more || tl.contiguousSeq < tl.maxSeq) await this.#fillGap(room);
    this.#flushOutbox(room);
  }

  // Everything after the last seq we hold without holes, page by page, until we are level.
  async #fillGap(room) {
    if (room.filling) return;
    room.filling = true;
    const tl = room.timeline;
    try {
      for (;;) {
        const page = await api.roomMessages(this.token, room.name,
          { after: tl.contiguousSeq, limit: FILL_PAGE });
        const before = tl.contiguousSeq;
        this.#addAll(room, page.messages);
        if (!page.more || tl.contiguousSeq === before) break;
      }
    } catch (err) {
      this.#apiFailed(err); // the next message or reconnect tries again
    } finally {
      room.filling = false;
    }
  }

  // ---- messages in --------------------------------------------------------------------------

  #received(message, live) {
    const room = this.rooms.get(message.room) ?? this.#room(message.room);
    const tl = room.timeline;
    const stick = room === this.current && this.#atBottom();
    const isNew = tl.add(message);
    this.#settled(room, message);
    this.#roomChanged(room);
    if (!isNew) return;
    room.typing.delete(message.user);
    if (room === this.current) {
      this.#renderTyping();
      if (stick) this.#scrollToBottom();
      if (live && message.user !== this.user) {
        this.el.announce.textContent = `${message.user}: ${message.text}`;
      }
    }
    // A seq beyond the next one means we missed some: fetch them once in-flight events landed.
    if (live && room.joined && tl.contiguousSeq < tl.maxSeq) {
      clearTimeout(room.gapTimer);
      room.gapTimer = setTimeout(() => this.#fillGap(room), 300);
    }
  }

  #addAll(room, messages) {
    const stick = room === this.current && this.#atBottom();
    for (const message of messages) {
      room.timeline.add(message);
      this.#settled(room, message);
    }
    this.#roomChanged(room);
    if (stick) this.#scrollToBottom();
  }

  // Bookkeeping for any message now on screen: the room's last seq, our outbox.
  #settled(room, message) {
    room.lastSeq = Math.max(room.lastSeq, message.seq);
    if (message.client_id && message.user === this.user) {
      this.outbox = this.outbox.filter((item) => item.clientId !== message.client_id);
    }
  }

  // New messages are read at once in the open room (when the page is visible), unread elsewhere.
  #roomChanged(room) {
    if (room === this.current && document.visibilityState !== "hidden") this.#markRead(room);
    else this.#renderRooms();
  }

  async loadOlder(room = this.current) {
    const tl = room.timeline;
    if (!tl.hasOlder || room.loadingOlder || tl.oldestSeq === null) return;
    room.loadingOlder = true;
    const scroller = this.el.timeline;
    const visible = room === this.current;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    try {
      const page = await api.roomMessages(this.token, room.name,
        { before: tl.oldestSeq, limit: OLDER_PAGE });
      for (const message of page.messages) tl.add(message);
      tl.setHasOlder(page.more);
      // Keep the message the reader was looking at where it was.
      if (visible && room === this.current) scroller.scrollTop = scroller.scrollHeight - fromBottom;
    } catch (err) {
      this.#apiFailed(err);
    } finally {
      room.loadingOlder = false;
    }
  }

  // ---- messages out -------------------------------------------------------------------------

  /** Queue a message for the open room; false if there is nothing to send or nowhere to. */
  send(text) {
    const room = this.current;
    if (!room || !text.trim()) return false;
    const item = { clientId: newClientId(), room: room.name, text: text.trim() };
    this.lastTypingSent = 0; // the others stop showing us as typing when the message lands
    this.outbox.push(item);
    room.timeline.addPending(item.clientId, item.text);
    this.#scrollToBottom();
    this.#flushOutbox(room);
    return true;
  }

  // Sends a room's pending messages one at a time, in the order they were typed.
  async #flushOutbox(room) {
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
      ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck("message",
        { room: item.room, text: item.text, client_id: item.clientId });
    } catch {
      if (this.socket.connected) setTimeout(() => this.#flushOutbox(room), RETRY_DELAY_MS);
      return false; // otherwise re-sent after the reconnect's join
    }
    if (ack.ok) {
      this.#received(ack.message, false);
      return true;
    }
    if (["rate_limited", "unavailable"].includes(ack.error.code)) {
      setTimeout(() => this.#flushOutbox(room), RETRY_DELAY_MS);
      return false;
    }
    item.failed = true;
    room.timeline.markFailed(item.clientId, ack.error.message);
    return true;
  }

  retry(clientId) {
    const item = this.outbox.find((i) => i.clientId === clientId);
    if (!item) return;
    item.failed = false;
    const room = this.rooms.get(item.room);
    room.timeline.markSending(clientId);
    this.#flushOutbox(room);
  }

  typed() {
    const room = this.current;
    const now = Date.now();
    if (!room?.joined || !this.socket.connected || !this.el.text.value.trim()) return;
    if (now - this.lastTypingSent < TYPING_SEND_INTERVAL_MS) return;
    this.lastTypingSent = now;
    this.socket.emit("typing", { room: room.name });
  }

  #someoneTyping(roomName, user) {
    const room = this.rooms.get(roomName);
    if (!room || user === this.user) return;
    room.typing.set(user, Date.now() + TYPING_SHOW_MS);
    if (room === this.current) this.#renderTyping();
    setTimeout(() => {
      if ((room.typing.get(user) ?? 0) <= Date.now()) room.typing.delete(user);
      if (room === this.current) this.#renderTyping();
    }, TYPING_SHOW_MS + 50);
  }

  // ---- rooms --------------------------------------------------------------------------------

  #room(name, info = {}) {
    let room = this.rooms.get(name);
    if (!room) {
      room = {
        name, private: false, members: null, lastSeq: 0, wanted: false, joined: false,
        timeline: new Timeline(name, this.user), online: [], typing: new Map(),
        draft: "", scrollTop: null, error: null,
      };
      this.rooms.set(name, room);
    }
    if (info.private !== undefined) room.private = info.private;
    if (info.members !== undefined) room.members = info.members;
    if (info.last_seq !== undefined) room.lastSeq = Math.max(room.lastSeq, info.last_seq);
    return room;
  }

  async refreshRooms() {
    try {
      const { rooms } = await api.listRooms(this.token);
      for (const info of rooms) this.#room(info.name, info);
      this.#renderRooms();
    } catch (err) {
      this.#apiFailed(err);
    }
  }

  open(name) {
    const previous = this.current;
    if (previous) {
      previous.draft = this.el.text.value;
      previous.scrollTop = this.#atBottom() ? null : this.el.timeline.scrollTop;
    }
    const room = this.#room(name);
    this.current = room;
    if (this.el.text.disabled) {
      // The first room is open: from now on what is typed has a room to go to.
      this.el.text.disabled = this.el.sendButton.disabled = false;
      this.el.text.focus();
    }
    sessionStorage.setItem("chat.room", name);
    this.el.timeline.replaceChildren(room.timeline.el);
    this.el.text.value = room.draft;
    this.el.text.placeholder = `Message #${room.name}`;
    this.#autosize();
    if (room.scrollTop === null) this.#scrollToBottom();
    else this.el.timeline.scrollTop = room.scrollTop;
    if (!room.wanted) {
      room.wanted = true;
      if (this.socket.connected) this.#join(room);
    }
    this.#markRead(room);
    this.#renderHeader();
    this.#renderOnline();
    this.#renderTyping();
    this.#showSidebar(false);
  }

  async createRoom(name, isPrivate, members) {
    const created = await api.createRoom(this.token, name, isPrivate, members);
    this.#room(created.name, created);
    this.open(created.name);
  }

  #markRead(room) {
    const seen = Math.max(room.lastSeq, room.timeline.maxSeq);
    if ((this.lastRead[room.name] ?? 0) !== seen) {
      this.lastRead[room.name] = seen;
      localStorage.setItem(this.readKey, JSON.stringify(this.lastRead));
    }
    this.#renderRooms();
  }

  #unread(room) {
    return room === this.current ? 0 : Math.max(0, room.lastSeq - (this.lastRead[room.name] ?? 0));
  }

  // ---- rendering ----------------------------------------------------------------------------

  #renderRooms() {
    const items = [];
    let totalUnread = 0;
    for (const room of [...this.rooms.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      const unread = this.#unread(room);
      totalUnread += unread;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "room-button";
      button.dataset.room = room.name;
      if (room === this.current) button.setAttribute("aria-current", "true");
      const name = document.createElement("span");
      name.className = "room-name";
      name.textContent = `#${room.name}`;
      button.append(name);
      if (room.private) {
        const lock = document.createElement("span");
        lock.className = "private-tag";
        lock.textContent = "private";
        button.append(lock);
      }
      if (unread > 0) {
        const badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = unread > 99 ? "99+" : String(unread);
        badge.setAttribute("aria-label", `${unread} unread`);
        button.append(badge);
      }
      const li = document.createElement("li");
      li.append(button);
      items.push(li);
    }
    // Rebuilding the list must not throw keyboard focus out of it.
    const focused = document.activeElement?.dataset?.room;
    this.el.roomList.replaceChildren(...items);
    if (focused) this.el.roomList.querySelector(`[data-room="${CSS.escape(focused)}"]`)?.focus();
    document.title = totalUnread ? `(${totalUnread}) Chat` : "Chat";
    this.el.toggleUnread.hidden = totalUnread === 0;
    this.el.toggleUnread.textContent = totalUnread > 99 ? "99+" : String(totalUnread);
  }

  #renderHeader() {
    const room = this.current;
    this.el.title.textContent = `#${room.name}`;
    if (room.private) {
      const tag = document.createElement("span");
      tag.className = "private-tag";
      tag.textContent = room.members ? `private: ${room.members.join(", ")}` : "private";
      this.el.title.append(" ", tag);
    }
    if (room.error) {
      const error = document.createElement("span");
      error.className = "error";
      error.setAttribute("role", "alert");
      error.textContent = room.error;
      this.el.title.append(" ", error);
    }
  }

  #renderOnline() {
    const users = this.current.online;
    this.el.online.textContent = users.length ? `${users.length} online: ${users.join(", ")}` : "";
  }

  #renderTyping() {
    const now = Date.now();
    const users = [...this.current.typing].filter(([, until]) => until > now).map(([u]) => u);
    this.el.typing.textContent = users.length === 0 ? ""
      : users.length === 1 ? `${users[0]} is typing…`
      : users.length === 2 ? `${users[0]} and ${users[1]} are typing…`
      : `${users.length} people are typing…`;
  }

  #atBottom() {
    const t = this.el.timeline;
    return t.scrollHeight - t.scrollTop - t.clientHeight < 40;
  }

  #scrollToBottom() {
    this.el.timeline.scrollTop = this.el.timeline.scrollHeight;
  }

  #autosize() {
    const text = this.el.text;
    text.style.height = "auto";
    text.style.height = `${Math.min(text.scrollHeight, 160)}px`;
  }

  #showSidebar(show) {
    const wasOpen = this.el.sidebar.classList.contains("open");
    this.el.sidebar.classList.toggle("open", show);
    this.el.toggle.setAttribute("aria-expanded", String(show));
    // Keyboard users land in the drawer they opened, and back on its button when it closes.
    if (show && !wasOpen) this.el.roomList.querySelector('[aria-current="true"]')?.focus();
    if (!show && wasOpen && this.el.sidebar.contains(document.activeElement)) this.el.toggle.focus();
  }

  #apiFailed(err) {
    if (err.status === 401) this.onLogout("Your session has expired. Please log in again.");
  }

  // ---- wiring -------------------------------------------------------------------------------

  #bindUi() {
    this.el.roomList.addEventListener("click", (e) => {
      const button = e.target.closest("[data-room]");
      if (button) this.open(button.dataset.room);
    });
    this.el.toggle.addEventListener("click", () => {
      this.#showSidebar(!this.el.sidebar.classList.contains("open"));
    });
    this.el.sidebar.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.#showSidebar(false);
    });
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      if (!this.send(this.el.text.value)) return; // kept in the box, not thrown away
      this.el.text.value = "";
      this.#autosize();
      this.el.text.focus();
    });
    this.el.text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $("composer").requestSubmit();
      }
    });
    this.el.text.addEventListener("input", () => {
      this.#autosize();
      this.typed();
    });
    this.el.timeline.addEventListener("scroll", () => {
      if (this.el.timeline.scrollTop < LOAD_OLDER_MARGIN_PX) this.loadOlder();
    });
    this.el.timeline.addEventListener("click", (e) => {
      if (e.target.closest(".load-older")) this.loadOlder();
      const retry = e.target.closest(".retry");
      if (retry) this.retry(retry.dataset.clientId);
    });
    $("new-room-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const form = e.target;
      const members = form.members.value.split(/[\s,]+/).filter(Boolean);
      $("new-room-error").textContent = "";
      try {
        await this.createRoom(form.name.value.trim(), form.private.checked, members);
        form.reset();
        $("new-room").open = false;
      } catch (err) {
        $("new-room-error").textContent = err.message;
        this.#apiFailed(err);
      }
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.current) this.#markRead(this.current);
    });
    $("logout").addEventListener("click", () => this.onLogout(""));
  }
}
