// The chat once logged in, on screen: the room list, the open room, the people picker, public
// rooms, members, notifications. What the chat knows and how it stays in sync with the server
// is sync.js (no DOM); this file renders it and turns clicks and keys into its calls.

import * as api from "./api.js";
import { ChatSync, displayName } from "./sync.js";
import { Timeline } from "./timeline.js";
import { checkRoomName, checkUsername, explain } from "./words.js";

// The server is asked for reconnects this long after it refused the connection outright.
const REFUSED_RETRY_MS = 4_000;
// "typing" is sent at most this often while someone types.
const TYPING_SEND_INTERVAL_MS = 2_500;
// Scrolling closer than this to the top loads the previous page of history.
const LOAD_OLDER_MARGIN_PX = 120;
// The people picker asks the server once typing pauses this long.
const SEARCH_DEBOUNCE_MS = 200;
// Public rooms listed per page in "Browse rooms".
const PUBLIC_PAGE = 20;

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function button(className, text, data = {}) {
  const b = element("button", className, text);
  b.type = "button";
  Object.assign(b.dataset, data);
  return b;
}

export class ChatApp {
  constructor({ token, user, onLogout }) {
    this.token = token;
    this.user = user;
    this.onLogout = onLogout;
    this.timelines = new Map(); // room name -> Timeline
    this.lastTypingSent = 0;
    this.scroll = new Map(); // room name -> scrollTop, null when at the bottom
    this.drafts = new Map(); // room name -> text typed and not sent
    this.el = {
      connection: $("connection"), roomList: $("room-list"), title: $("room-title"),
      online: $("online"), timeline: $("timeline"), typing: $("typing"),
      text: $("composer-text"), sendButton: document.querySelector("#composer button"),
      announce: $("announce"), sidebar: $("sidebar"),
      toggle: $("rooms-toggle"), toggleUnread: $("rooms-toggle-unread"),
      peopleSearch: $("people-search"), peopleResults: $("people-results"),
      peopleError: $("people-error"), publicRooms: $("public-rooms"),
      publicMore: $("public-more"), browse: $("browse-rooms"), browseError: $("browse-error"),
      roomActions: $("room-actions"), membersToggle: $("members-toggle"),
      membersPanel: $("members-panel"), memberList: $("member-list"),
      memberError: $("member-error"), leave: $("leave-room"),
    };
  }

  async start() {
    $("me").textContent = this.user;
    // Read positions used to be kept per browser; the server keeps them now.
    localStorage.removeItem(`chat.lastRead.${this.user}`);
    // WebSocket first; where a proxy or network refuses it, fall back to long-polling
    // (nginx keeps a polling session on one worker with its affinity cookie).
    this.socket = io({
      auth: { token: this.token },
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      // A handshake that never completes (a socket opened and closed by a proxy before
      // Engine.IO's open packet) is given up on after this long, not the default 20 s.
      timeout: 10_000,
    });
    this.sync = new ChatSync({
      me: this.user,
      socket: this.socket,
      rest: {
        listRooms: () => api.listRooms(this.token),
        roomMessages: (room, query) => api.roomMessages(this.token, room, query),
      },
      storage: localStorage,
      view: this,
    });
    this.sync.notifyWanted = () => "Notification" in window && Notification.permission === "granted";
    this.sync.setHidden(document.visibilityState === "hidden");
    this.#bindSocket();
    this.#bindUi();
    await this.sync.start(); // the room list: the only REST read that is not on demand
    // The room this tab had open, else #general: everyone's lobby (joining makes it theirs).
    const wanted = sessionStorage.getItem("chat.room");
    this.open(this.sync.myRooms().some((r) => r.name === wanted) ? wanted : "general");
  }

  // ---- connection ---------------------------------------------------------------------------

  #bindSocket() {
    const s = this.socket;
    s.on("connect_error", (err) => {
      if (err.message === "unauthorized") {
        this.onLogout("Your session has expired. Please log in again.");
      } else if (!s.active) {
        // Refused by the server (e.g. too many connections): the client will not retry itself.
        this.#setConnection("reconnecting");
        setTimeout(() => s.connect(), REFUSED_RETRY_MS);
      } else {
        this.#setConnection(navigator.onLine ? "reconnecting" : "offline");
      }
    });
    s.on("session", ({ node }) => { this.el.connection.title = `served by ${node}`; });
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

  // ---- what sync.js tells us ----------------------------------------------------------------

  connectionChanged(state) {
    if (state === "connected") this.#setConnection("connected");
    else this.#setConnection(navigator.onLine ? "reconnecting" : "offline");
  }

  roomsChanged() {
    this.#renderRooms();
  }

  roomAdded() {
    this.#renderRooms();
  }

  roomChanged(room) {
    if (room === this.sync.current) this.#renderHeader();
  }

  roomRemoved(room) {
    this.timelines.delete(room.name);
    if (this.openName === room.name) {
      this.openName = null;
      const mine = this.sync.myRooms();
      const next = mine.find((r) => r.name === "general") ?? mine[0];
      if (next) this.open(next.name);
      else this.#showNoRoom();
    }
  }

  historyChanged(room) {
    this.#timeline(room).setHasOlder(room.hasOlder);
  }

  messagesAdded(room, messages, { live }) {
    const tl = this.#timeline(room);
    const visible = room === this.sync.current;
    const stick = visible && this.#atBottom();
    for (const message of messages) tl.add(message);
    if (visible) {
      this.#renderTyping();
      if (stick) this.#scrollToBottom();
      const last = messages.at(-1);
      if (live && last.user !== this.user) {
        this.el.announce.textContent = `${last.user}: ${last.text}`;
      }
    }
  }

  pendingAdded(room, item) {
    this.#timeline(room).addPending(item.client_id, item.text);
    if (room === this.sync.current) this.#scrollToBottom();
  }

  sendFailed(room, item, error) {
    this.#timeline(room).markFailed(item.client_id, explain(error, "send"));
  }

  sendRetrying(room, item) {
    this.#timeline(room).markSending(item.client_id);
  }

  outboxChanged() {}

  presenceChanged() {
    if (this.sync.current) this.#renderOnline();
  }

  typingChanged() {
    this.#renderTyping();
  }

  apiFailed(err) {
    if (err.status === 401) this.onLogout("Your session has expired. Please log in again.");
  }

  notify(room, message, reason) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const where = room.kind === "dm" ? message.user : `${message.user} in ${displayName(room, this.user)}`;
    const title = reason === "mention" ? `${where} mentioned you` : where;
    let n;
    try {
      n = new Notification(title, { body: message.text.slice(0, 200), tag: `chat-${room.name}` });
    } catch {
      return; // Chrome on Android: page notifications need a service worker; the title still counts
    }
    n.onclick = () => {
      window.focus();
      this.open(room.name);
      n.close();
    };
  }

  // Asked at a moment the person shows they talk to people here (a send, a DM), never on load.
  #askNotifications() {
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
  }

  // ---- rooms --------------------------------------------------------------------------------

  #timeline(room) {
    let tl = this.timelines.get(room.name);
    if (!tl) {
      tl = new Timeline(room.kind === "dm" ? `your conversation with ${displayName(room, this.user)}`
        : `#${room.name}`, this.user);
      this.timelines.set(room.name, tl);
    }
    return tl;
  }

  open(name) {
    const previous = this.openName;
    if (previous && this.timelines.has(previous)) {
      this.drafts.set(previous, this.el.text.value);
      this.scroll.set(previous, this.#atBottom() ? null : this.el.timeline.scrollTop);
    }
    const room = this.sync.open(name);
    this.openName = name;
    if (this.el.text.disabled) {
      // The first room is open: from now on what is typed has a room to go to.
      this.el.text.disabled = this.el.sendButton.disabled = false;
      this.el.text.focus();
    }
    sessionStorage.setItem("chat.room", name);
    this.el.timeline.replaceChildren(this.#timeline(room).el);
    this.el.text.value = this.drafts.get(name) ?? "";
    this.el.text.placeholder = `Message ${displayName(room, this.user)}`;
    this.#autosize();
    const top = this.scroll.get(name) ?? null;
    if (top === null) this.#scrollToBottom();
    else this.el.timeline.scrollTop = top;
    this.el.membersPanel.hidden = true;
    this.el.membersToggle.setAttribute("aria-expanded", "false");
    this.#renderHeader();
    this.#renderOnline();
    this.#renderTyping();
    this.#renderRooms();
    this.#showSidebar(false);
    if (room.kind === "dm") this.#askNotifications();
  }

  #showNoRoom() {
    this.el.timeline.replaceChildren(element("p", "empty", "Pick a room or a person on the left."));
    this.el.title.textContent = "No room open";
    this.el.roomActions.hidden = true;
    this.el.text.disabled = this.el.sendButton.disabled = true;
  }

  async createRoom(name, isPrivate, members) {
    const created = await api.createRoom(this.token, name, isPrivate, members);
    this.sync.adopt(created);
    this.open(created.name);
  }

  async startDm(username) {
    const room = await api.openDm(this.token, username);
    this.sync.adopt(room);
    this.open(room.name);
  }

  // ---- rendering ----------------------------------------------------------------------------

  #renderRooms() {
    const sync = this.sync;
    const current = sync.current;
    const rooms = sync.myRooms().sort((a, b) => (a.kind === "dm") !== (b.kind === "dm")
      ? (a.kind === "dm" ? -1 : 1)
      : displayName(a, this.user).localeCompare(displayName(b, this.user)));
    const items = rooms.map((room) => {
      const unread = room === current && !sync.hidden ? 0 : sync.unread(room);
      const name = displayName(room, this.user);
      const b = button("room-button", undefined, { room: room.name, kind: room.kind });
      if (room === current) b.setAttribute("aria-current", "true");
      b.append(element("span", "room-name", name));
      if (room.kind === "private") b.append(element("span", "private-tag", "private"));
      if (room.kind === "dm") b.append(element("span", "private-tag visually-hidden", "direct message"));
      if (unread > 0) {
        const badge = element("span", "badge", unread > 99 ? "99+" : String(unread));
        badge.setAttribute("aria-label", `${unread} unread`);
        b.append(badge);
      }
      const li = element("li");
      li.append(b);
      return li;
    });
    // Rebuilding the list must not throw keyboard focus out of it.
    const focused = document.activeElement?.dataset?.room;
    this.el.roomList.replaceChildren(...items);
    if (focused) this.el.roomList.querySelector(`[data-room="${CSS.escape(focused)}"]`)?.focus();
    const total = sync.totalUnread();
    document.title = total ? `(${total}) Chat` : "Chat";
    // The drawer button counts what is not on screen: the open room is being read.
    const elsewhere = total - (current && sync.hidden ? sync.unread(current) : 0);
    this.el.toggleUnread.hidden = elsewhere === 0;
    this.el.toggleUnread.textContent = elsewhere > 99 ? "99+" : String(elsewhere);
    if (current && this.openName === current.name) this.#renderHeader();
  }

  #renderHeader() {
    const room = this.sync.current;
    if (!room) return;
    this.el.title.textContent = displayName(room, this.user);
    if (room.kind === "private") {
      this.el.title.append(" ", element("span", "private-tag",
        room.members ? `private: ${room.members.join(", ")}` : "private"));
    }
    if (room.kind === "dm") this.el.title.append(" ", element("span", "private-tag", "direct message"));
    if (room.error) {
      const error = element("span", "error", explain(room.error, "join"));
      error.setAttribute("role", "alert");
      this.el.title.append(" ", error);
    }
    this.el.roomActions.hidden = !room.member;
    this.el.membersToggle.hidden = room.kind !== "private";
    this.el.leave.hidden = room.kind === "dm";
    if (!this.el.membersPanel.hidden) this.#renderMembers();
  }

  #renderMembers() {
    const room = this.sync.current;
    const creator = room.creator;
    const items = (room.members ?? []).map((member) => {
      const li = element("li", "member");
      li.append(element("span", "member-name", member));
      if (creator && member.toLowerCase() === creator.toLowerCase()) {
        li.append(element("span", "private-tag", "created the room"));
      }
      // Only the creator may remove others. Room objects do not name the creator (yet): then
      // every member is offered the button and the server's refusal is shown in words.
      const mayRemove = (!creator || creator.toLowerCase() === this.user.toLowerCase())
        && member.toLowerCase() !== this.user.toLowerCase();
      if (mayRemove) {
        const remove = button("link remove-member", "Remove", { user: member });
        remove.setAttribute("aria-label", `Remove ${member}`);
        li.append(remove);
      }
      return li;
    });
    this.el.memberList.replaceChildren(...items);
  }

  #renderOnline() {
    const users = this.sync.current?.online ?? [];
    this.el.online.textContent = users.length ? `${users.length} online: ${users.join(", ")}` : "";
  }

  #renderTyping() {
    const room = this.sync.current;
    const now = Date.now();
    const users = room ? [...room.typing].filter(([, until]) => until > now).map(([u]) => u) : [];
    this.el.typing.textContent = users.length === 0 ? ""
      : users.length === 1 ? `${users[0]} is typing…`
      : users.length === 2 ? `${users[0]} and ${users[1]} are typing…`
      : `${users.length} people are typing…`;
  }

  #renderPeople(users) {
    const items = users.filter((u) => u.username.toLowerCase() !== this.user.toLowerCase())
      .map((u) => {
        const li = element("li");
        const b = button("person-button", u.username, { user: u.username });
        b.setAttribute("aria-label", `Message ${u.username}`);
        li.append(b);
        return li;
      });
    this.el.peopleResults.replaceChildren(...items);
    if (!items.length && this.el.peopleSearch.value.trim()) {
      this.el.peopleResults.append(element("li", "hint", "Nobody by that name."));
    }
  }

  async #searchPeople() {
    const q = this.el.peopleSearch.value.trim();
    this.el.peopleError.textContent = "";
    if (!q) {
      this.el.peopleResults.replaceChildren();
      return;
    }
    const asked = q;
    try {
      const { users } = await api.searchUsers(this.token, q);
      if (this.el.peopleSearch.value.trim() === asked) this.#renderPeople(users);
    } catch (err) {
      this.el.peopleError.textContent = explain(err, "search");
      this.apiFailed(err);
    }
  }

  async #loadPublicRooms(after) {
    this.el.browseError.textContent = "";
    try {
      const page = await api.publicRooms(this.token, { after, limit: PUBLIC_PAGE });
      const items = page.rooms.map((info) => {
        const li = element("li", "public-room");
        li.append(element("span", "room-name", `#${info.name}`));
        const mine = this.sync.rooms.get(info.name)?.member;
        const b = button(mine ? "secondary join-room" : "join-room", mine ? "Open" : "Join",
          { room: info.name });
        b.setAttribute("aria-label", `${mine ? "Open" : "Join"} #${info.name}`);
        li.append(b);
        return li;
      });
      if (after) this.el.publicRooms.append(...items);
      else this.el.publicRooms.replaceChildren(...items);
      const last = page.rooms.at(-1)?.name;
      const more = page.more ?? page.rooms.length === PUBLIC_PAGE;
      this.el.publicMore.hidden = !(more && last);
      this.el.publicMore.dataset.after = last ?? "";
      if (!page.rooms.length && !after) {
        this.el.publicRooms.append(element("li", "hint", "No public rooms yet."));
      }
    } catch (err) {
      this.el.browseError.textContent = explain(err, "browse");
      this.apiFailed(err);
    }
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

  async #loadOlder() {
    const room = this.sync.current;
    if (!room) return;
    const scroller = this.el.timeline;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    const added = await this.sync.loadOlder(room);
    // Keep the message the reader was looking at where it was.
    if (added.length && room === this.sync.current) {
      scroller.scrollTop = scroller.scrollHeight - fromBottom;
    }
  }

  // ---- wiring -------------------------------------------------------------------------------

  #bindUi() {
    this.el.roomList.addEventListener("click", (e) => {
      const b = e.target.closest("[data-room]");
      if (b) this.open(b.dataset.room);
    });
    this.el.toggle.addEventListener("click", () => {
      this.#showSidebar(!this.el.sidebar.classList.contains("open"));
    });
    this.el.sidebar.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.#showSidebar(false);
    });
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      const room = this.sync.current;
      if (!room || !this.sync.send(room.name, this.el.text.value)) return; // kept in the box
      this.lastTypingSent = 0; // the others stop showing us as typing when the message lands
      this.el.text.value = "";
      this.drafts.delete(room.name);
      this.#autosize();
      this.el.text.focus();
      this.#askNotifications();
    });
    this.el.text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $("composer").requestSubmit();
      }
    });
    this.el.text.addEventListener("input", () => {
      this.#autosize();
      const now = Date.now();
      if (!this.el.text.value.trim() || now - this.lastTypingSent < TYPING_SEND_INTERVAL_MS) return;
      this.lastTypingSent = now;
      this.sync.typing();
    });
    this.el.timeline.addEventListener("scroll", () => {
      if (this.el.timeline.scrollTop < LOAD_OLDER_MARGIN_PX) this.#loadOlder();
    });
    this.el.timeline.addEventListener("click", (e) => {
      if (e.target.closest(".load-older")) this.#loadOlder();
      const retry = e.target.closest(".retry");
      if (retry) this.sync.retry(retry.dataset.clientId);
    });

    // People: search as you type, Enter takes the first match, a click or Enter on one opens the DM.
    let searchTimer = null;
    this.el.peopleSearch.addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => this.#searchPeople(), SEARCH_DEBOUNCE_MS);
    });
    this.el.peopleSearch.addEventListener("keydown", (e) => {
      if (e.key === "ArrowDown") {
        e.preventDefault();
        this.el.peopleResults.querySelector("button")?.focus();
      }
    });
    this.el.peopleResults.addEventListener("keydown", (e) => {
      const items = [...this.el.peopleResults.querySelectorAll("button")];
      const i = items.indexOf(document.activeElement);
      if (e.key === "ArrowDown" && i >= 0) { e.preventDefault(); items[i + 1]?.focus(); }
      if (e.key === "ArrowUp" && i >= 0) {
        e.preventDefault();
        (i === 0 ? this.el.peopleSearch : items[i - 1]).focus();
      }
    });
    $("people-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      clearTimeout(searchTimer);
      const typed = this.el.peopleSearch.value.trim();
      const first = this.el.peopleResults.querySelector("button")?.dataset.user;
      const who = first ?? typed;
      const problem = checkUsername(who);
      if (problem) {
        this.el.peopleError.textContent = problem;
        return;
      }
      await this.#pickPerson(who);
    });
    this.el.peopleResults.addEventListener("click", async (e) => {
      const b = e.target.closest("[data-user]");
      if (b) await this.#pickPerson(b.dataset.user);
    });

    // Public rooms: listed when the section is opened (on demand), joined with a click.
    this.el.browse.addEventListener("toggle", () => {
      if (this.el.browse.open) this.#loadPublicRooms();
    });
    this.el.publicMore.addEventListener("click", () => {
      this.#loadPublicRooms(this.el.publicMore.dataset.after);
    });
    this.el.publicRooms.addEventListener("click", (e) => {
      const b = e.target.closest("[data-room]");
      if (!b) return;
      this.open(b.dataset.room); // the join makes us a member
      b.textContent = "Open";
      b.classList.add("secondary");
    });

    $("new-room-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const form = e.target;
      const name = form.name.value.trim();
      const members = form.members.value.split(/[\s,]+/).filter(Boolean);
      const problem = checkRoomName(name) || members.map(checkUsername).find(Boolean)
        && "Members are usernames: 3 to 32 letters, digits, _ or -.";
      $("new-room-error").textContent = problem || "";
      if (problem) return;
      try {
        await this.createRoom(name, form.private.checked, members);
        form.reset();
        $("new-room").open = false;
      } catch (err) {
        $("new-room-error").textContent = explain(err, "room");
        this.apiFailed(err);
      }
    });

    // The open room: members (private rooms), leaving.
    this.el.membersToggle.addEventListener("click", () => {
      const show = this.el.membersPanel.hidden;
      this.el.membersPanel.hidden = !show;
      this.el.membersToggle.setAttribute("aria-expanded", String(show));
      if (show) {
        this.#renderMembers();
        $("add-member-name").focus();
        // Others may have added or removed people since: a joined room's members are not
        // pushed, so they are read once, on this demand.
        this.sync.refreshRooms();
      }
    });
    $("add-member-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const input = $("add-member-name");
      const who = input.value.trim();
      const room = this.sync.current;
      this.el.memberError.textContent = checkUsername(who);
      if (!room || this.el.memberError.textContent) return;
      try {
        const updated = await api.addMember(this.token, room.name, who);
        if (updated?.name) this.sync.adopt(updated);
        else if (room.members && !room.members.includes(who)) room.members = [...room.members, who];
        input.value = "";
        this.#renderHeader();
        this.#renderMembers();
      } catch (err) {
        this.el.memberError.textContent = explain(err, "member");
        this.apiFailed(err);
      }
    });
    this.el.memberList.addEventListener("click", async (e) => {
      const b = e.target.closest(".remove-member");
      const room = this.sync.current;
      if (!b || !room) return;
      try {
        await api.removeMember(this.token, room.name, b.dataset.user);
        room.members = (room.members ?? []).filter((m) => m !== b.dataset.user);
        this.#renderHeader();
        this.#renderMembers();
      } catch (err) {
        this.el.memberError.textContent = explain(err, "remove");
        this.apiFailed(err);
      }
    });
    this.el.leave.addEventListener("click", async () => {
      const room = this.sync.current;
      if (!room) return;
      try {
        await api.removeMember(this.token, room.name, this.user);
        this.sync.leave(room.name); // at once; the server's room_removed confirms it
      } catch (err) {
        this.apiFailed(err);
        const error = element("span", "error", explain(err, "leave"));
        error.setAttribute("role", "alert");
        this.el.title.append(" ", error);
      }
    });

    document.addEventListener("visibilitychange", () => {
      this.sync.setHidden(document.visibilityState === "hidden");
    });
    // Unsent messages survive in localStorage, but a person closing the tab should know.
    window.addEventListener("beforeunload", (e) => {
      if (this.sync.unsent > 0) {
        e.preventDefault();
        e.returnValue = "";
      }
    });
    $("logout").addEventListener("click", () => this.onLogout(""));
  }

  async #pickPerson(username) {
    this.el.peopleError.textContent = "";
    try {
      await this.startDm(username);
      this.el.peopleSearch.value = "";
      this.el.peopleResults.replaceChildren();
      this.#askNotifications();
    } catch (err) {
      this.el.peopleError.textContent = explain(err, "dm");
      this.apiFailed(err);
    }
  }
}
