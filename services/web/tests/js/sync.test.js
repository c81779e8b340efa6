// The sync logic against a fake socket and REST: what the page believes after each event.
// Run: node --test services/web/tests/js/  (also from pytest: services/web/tests/test_js_units.py)

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  ChatSync, RoomLog, StoredOutbox, displayName, mentions, mentionsOf,
} from "../../js/sync.js";

/** A socket.io-client Socket stand-in: records what is emitted, answers acks with `respond`. */
class FakeSocket {
  constructor(respond) {
    this.handlers = new Map();
    this.connected = false;
    this.calls = []; // [event, payload] of every emit, in order
    this.respond = respond;
  }

  on(event, fn) {
    this.handlers.set(event, fn);
  }

  emit(event, payload) {
    this.calls.push([event, payload]);
  }

  timeout() {
    return {
      emitWithAck: async (event, payload) => {
        this.calls.push([event, payload]);
        return this.respond(event, payload);
      },
    };
  }

  fire(event, payload) {
    if (event === "connect") this.connected = true;
    if (event === "disconnect") this.connected = false;
    this.handlers.get(event)?.(payload);
  }

  sent(event) {
    return this.calls.filter(([e]) => e === event).map(([, p]) => p);
  }
}

class MemoryStorage {
  constructor() {
    this.data = new Map();
  }

  getItem(k) {
    return this.data.has(k) ? this.data.get(k) : null;
  }

  setItem(k, v) {
    this.data.set(k, String(v));
  }

  removeItem(k) {
    this.data.delete(k);
  }
}

/** Timers that run only when the test says so. */
class ManualTimers {
  constructor() {
    this.queue = [];
  }

  setTimeout(fn) {
    this.queue.push(fn);
    return this.queue.length;
  }

  clearTimeout() {}

  async runAll() {
    const due = this.queue.splice(0);
    for (const fn of due) await fn();
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

const message = (room, seq, user = "bob", text = `m${seq}`, extra = {}) => ({
  id: seq, room, seq, user, text, created_at: "2026-11-30T10:00:00Z", ...extra,
});

/** A ChatSync for "alice" with a scripted server; returns the pieces a test looks at. */
function setup({ rooms = [], history = {}, storage = new MemoryStorage(), pages = {} } = {}) {
  const stored = []; // messages the fake server has stored, by client_id
  const socket = new FakeSocket(async (event, payload) => {
    if (event === "join") {
      const all = history[payload.room] ?? [];
      const messages = payload.since === undefined ? all.slice(-50)
        : all.filter((m) => m.seq > payload.since);
      return { ok: true, room: payload.room, messages };
    }
    if (event === "read") return { ok: true, room: payload.room, last_read_seq: payload.seq };
    if (event === "message") {
      let m = stored.find((s) => s.client_id === payload.client_id);
      if (!m) {
        const all = (history[payload.room] ??= []);
        m = message(payload.room, all.length + 1, "alice", payload.text,
          { client_id: payload.client_id });
        all.push(m);
        stored.push(m);
      }
      return { ok: true, message: m };
    }
    return { ok: true };
  });
  const restCalls = [];
  const rest = {
    async listRooms() {
      restCalls.push(["listRooms"]);
      return { rooms };
    },
    async roomMessages(room, query) {
      restCalls.push(["roomMessages", room, query]);
      const all = history[room] ?? [];
      if (pages[room]) return pages[room](query);
      const after = query.after ?? 0;
      const messages = all.filter((m) => m.seq > after).slice(0, query.limit);
      return { messages, more: false };
    },
  };
  const events = [];
  const view = new Proxy({}, {
    get: (_, name) => (...args) => events.push([name, ...args]),
  });
  const timers = new ManualTimers();
  let n = 0;
  const random = (len) => Uint8Array.from({ length: len }, () => ++n % 256);
  const sync = new ChatSync({ me: "alice", socket, rest, storage, view, timers, random });
  return { sync, socket, rest, restCalls, events, timers, storage, stored, history };
}

const roomInfo = (name, extra = {}) => ({
  name, kind: "public", private: false, last_seq: 0, last_read_seq: 0, unread: 0, ...extra,
});

describe("RoomLog", () => {
  it("knows up to where it holds every seq, and a gap above it", () => {
    const log = new RoomLog();
    assert.equal(log.known, false);
    for (const seq of [5, 6, 8]) log.add(seq);
    assert.deepEqual([log.oldestSeq, log.contiguousSeq, log.maxSeq, log.hasGap], [5, 6, 8, true]);
    assert.equal(log.add(6), false); // held already
    log.add(7);
    assert.deepEqual([log.contiguousSeq, log.hasGap], [8, false]);
    log.add(3); // an older page
    assert.deepEqual([log.oldestSeq, log.contiguousSeq], [3, 8]);
  });

  it("after an empty room was joined, seq 2 first is a gap", () => {
    const log = new RoomLog();
    log.markEmpty();
    log.add(2);
    assert.deepEqual([log.oldestSeq, log.contiguousSeq, log.hasGap], [1, 0, true]);
    log.add(1);
    assert.deepEqual([log.contiguousSeq, log.hasGap], [2, false]);
  });
});

describe("names and mentions", () => {
  it("finds @names, not e-mail addresses or words", () => {
    assert.deepEqual(mentionsOf("hi @Bob and @carol-2, mail x@bob.org, a@b"), ["bob", "carol-2"]);
    assert.equal(mentions("(@alice) look", "alice"), true);
    assert.equal(mentions("@alicex look", "alice"), false);
    assert.equal(mentions("@al", "al"), false); // too short to be a username
  });

  it("names a DM by the other person, a room by #name", () => {
    assert.equal(displayName({ kind: "dm", name: "dm-1", members: ["alice", "bob"] }, "alice"), "bob");
    assert.equal(displayName({ kind: "dm", name: "dm-2", members: ["alice"] }, "alice"), "alice");
    assert.equal(displayName({ kind: "public", name: "general" }, "alice"), "#general");
  });
});

describe("unread counts come from the server's read state", () => {
  it("counts only my rooms, from last_read_seq, and the open room only while hidden", async () => {
    const { sync, socket } = setup({
      rooms: [
        roomInfo("general", { last_seq: 248, last_read_seq: 248 }),
        roomInfo("team", { kind: "private", private: true, last_seq: 7, last_read_seq: 4, unread: 3 }),
      ],
    });
    await sync.start();
    assert.equal(sync.totalUnread(), 3); // not "(248)": general was read
    socket.fire("connect");
    sync.open("team");
    await settle();
    assert.deepEqual(socket.sent("read"), [{ room: "team", seq: 7 }]);
    assert.equal(sync.totalUnread(), 0);

    sync.setHidden(true);
    socket.fire("message", message("team", 8));
    assert.equal(sync.totalUnread(), 1); // the open room counts while nobody looks at it
    sync.setHidden(false);
    await settle();
    assert.deepEqual(socket.sent("read").at(-1), { room: "team", seq: 8 });
    assert.equal(sync.totalUnread(), 0);
  });

  it("a read on another device clears the badge here, and never moves it back", async () => {
    const { sync, socket } = setup({ rooms: [roomInfo("team", { last_seq: 9, last_read_seq: 2 })] });
    await sync.start();
    socket.fire("connect");
    const team = sync.rooms.get("team");
    assert.equal(sync.unread(team), 7);
    socket.fire("read", { room: "team", last_read_seq: 9 });
    assert.equal(sync.unread(team), 0);
    socket.fire("read", { room: "team", last_read_seq: 5 });
    assert.equal(team.lastReadSeq, 9);
  });

  it("my own message is read", async () => {
    const { sync, socket } = setup({ rooms: [roomInfo("team", { last_seq: 2, last_read_seq: 0 })] });
    await sync.start();
    socket.fire("message", message("team", 3, "alice"));
    assert.equal(sync.unread(sync.rooms.get("team")), 0);
  });
});

describe("rooms pushed by the server", () => {
  it("a DM created by someone else appears at once, with its unread count", async () => {
    const { sync, socket, events, restCalls } = setup();
    await sync.start();
    socket.fire("connect");
    socket.fire("room", { name: "dm-7", kind: "dm", private: true, members: ["alice", "bob"],
      last_seq: 1, last_read_seq: 0, unread: 1 });
    const dm = sync.rooms.get("dm-7");
    assert.equal(displayName(dm, "alice"), "bob");
    assert.equal(sync.totalUnread(), 1);
    assert.ok(events.some(([name, room]) => name === "roomAdded" && room === dm));
    assert.deepEqual(restCalls, [["listRooms"]]); // learnt over the socket, nothing fetched
  });

  it("room_removed drops the room and refuses what was waiting to be sent there", async () => {
    const { sync, socket, events, storage } = setup({
      rooms: [roomInfo("team", { kind: "private", private: true })],
    });
    await sync.start();
    sync.send("team", "still there?"); // not connected: waits
    socket.fire("room_removed", { room: "team" });
    assert.equal(sync.rooms.has("team"), false);
    assert.ok(events.some(([name]) => name === "roomRemoved"));
    assert.ok(events.some(([name, , , error]) => name === "sendFailed" && error.code === "forbidden"));
    assert.equal(storage.getItem("chat.outbox.alice"), null);
    assert.equal(sync.unsent, 0);
  });
});

describe("reconnecting", () => {
  it("re-reads my rooms once: a room left meanwhile on another device goes, not re-joined", async () => {
    const rooms = [roomInfo("general"), roomInfo("games")];
    const t = setup({ rooms });
    await t.sync.start();
    t.socket.fire("connect");
    t.sync.open("games");
    t.sync.open("general");
    await settle();
    t.socket.fire("disconnect");
    rooms.splice(1, 1); // left #games on the phone while this tab was offline
    t.socket.fire("connect");
    await settle();
    await settle();
    assert.equal(t.sync.rooms.has("games"), false);
    assert.deepEqual(t.restCalls.map(([call]) => call), ["listRooms", "listRooms"]);
    const joins = t.socket.sent("join").map((j) => j.room);
    assert.deepEqual(joins, ["games", "general", "general"]);
  });
});

describe("leaving and scrolling back", () => {
  it("leaving a room tells the server's socket room and drops it here at once", async () => {
    const t = setup({ rooms: [roomInfo("general"), roomInfo("games")] });
    await t.sync.start();
    t.socket.fire("connect");
    t.sync.open("games");
    t.sync.leave("games");
    assert.deepEqual(t.socket.sent("leave"), [{ room: "games" }]);
    assert.equal(t.sync.rooms.has("games"), false);
    assert.equal(t.sync.current, null);
    t.socket.fire("room_removed", { room: "games" }); // the server's confirmation: no-op
    assert.deepEqual(t.sync.myRooms().map((r) => r.name), ["general"]);
  });

  it("older pages come before the oldest held seq, until the server says there are no more", async () => {
    const all = Array.from({ length: 120 }, (_, i) => message("archive", i + 1));
    const t = setup({
      rooms: [roomInfo("archive", { last_seq: 120, last_read_seq: 120 })],
      history: { archive: all },
      pages: {
        archive: ({ before, limit }) => {
          const older = all.filter((m) => m.seq < before);
          return { messages: older.slice(-limit), more: older.length > limit };
        },
      },
    });
    await t.sync.start();
    t.socket.fire("connect");
    const room = t.sync.open("archive");
    await settle();
    assert.deepEqual([room.log.oldestSeq, room.hasOlder], [71, true]);
    assert.equal((await t.sync.loadOlder(room)).length, 50);
    assert.deepEqual([room.log.oldestSeq, room.hasOlder], [21, true]);
    assert.equal((await t.sync.loadOlder(room)).length, 20);
    assert.deepEqual([room.log.oldestSeq, room.hasOlder, room.log.contiguousSeq], [1, false, 120]);
    assert.deepEqual(await t.sync.loadOlder(room), []); // nothing more asked
    assert.equal(t.restCalls.length, 3);
  });
});

describe("the outbox", () => {
  it("survives a reload and is sent once, with its client_id, when back", async () => {
    const storage = new MemoryStorage();
    const first = setup({ storage, rooms: [roomInfo("general")] });
    await first.sync.start();
    const item = first.sync.send("general", "  typed offline  ");
    assert.equal(item.text, "typed offline");
    assert.equal(first.sync.unsent, 1);
    assert.deepEqual(new StoredOutbox(storage, "alice").load(),
      [{ room: "general", text: "typed offline", client_id: item.client_id }]);

    // The page is reloaded: a new ChatSync on the same storage.
    const second = setup({ storage, rooms: [roomInfo("general")] });
    second.history.general = first.history.general;
    await second.sync.start();
    assert.ok(second.events.some(([name, , i]) => name === "pendingAdded"
      && i.client_id === item.client_id));
    second.socket.fire("connect"); // joins general because a message waits for it
    await settle();
    await settle();
    assert.deepEqual(second.socket.sent("message"),
      [{ room: "general", text: "typed offline", client_id: item.client_id }]);
    assert.equal(second.sync.unsent, 0);
    assert.equal(storage.getItem("chat.outbox.alice"), null);
  });

  it("a send whose ack was lost is re-sent with the same client_id after the reconnect", async () => {
    const storage = new MemoryStorage();
    const t = setup({ storage, rooms: [roomInfo("general")] });
    await t.sync.start();
    t.socket.fire("connect");
    t.sync.open("general");
    await settle();
    const respond = t.socket.respond;
    t.socket.respond = async (event, payload) => {
      if (event === "message") throw new Error("timeout");
      return respond(event, payload);
    };
    const item = t.sync.send("general", "hello");
    await settle();
    t.socket.fire("disconnect");
    t.socket.respond = respond;
    t.socket.fire("connect");
    await settle();
    await settle();
    const sends = t.socket.sent("message");
    assert.equal(sends.length, 2);
    assert.deepEqual(new Set(sends.map((s) => s.client_id)), new Set([item.client_id]));
    assert.equal(t.sync.unsent, 0);
  });
});

describe("catching up", () => {
  it("a re-join asks for everything after what is held; a seq jump is fetched", async () => {
    const history = { general: [1, 2, 3].map((s) => message("general", s)) };
    const t = setup({ rooms: [roomInfo("general", { last_seq: 3 })], history });
    await t.sync.start();
    t.socket.fire("connect");
    t.sync.open("general");
    await settle();
    t.socket.fire("disconnect");
    history.general.push(message("general", 4));
    t.socket.fire("connect");
    await settle();
    assert.deepEqual(t.socket.sent("join").at(-1), { room: "general", since: 3 });

    history.general.push(message("general", 5), message("general", 6));
    t.socket.fire("message", message("general", 6)); // 5 was lost on the way
    assert.equal(t.sync.rooms.get("general").log.hasGap, true);
    await t.timers.runAll();
    assert.deepEqual(t.restCalls.at(-1), ["roomMessages", "general", { after: 4, limit: 100 }]);
    assert.equal(t.sync.rooms.get("general").log.contiguousSeq, 6);
  });
});

describe("notifications", () => {
  async function hiddenAlice() {
    const t = setup({
      rooms: [roomInfo("general", { last_seq: 0 }),
        roomInfo("dm-1", { kind: "dm", private: true, members: ["alice", "bob"] })],
    });
    await t.sync.start();
    t.sync.notifyWanted = () => true;
    t.socket.fire("connect");
    t.sync.open("general");
    await settle();
    t.sync.setHidden(true);
    return t;
  }

  const notified = (events) => events.filter(([name]) => name === "notify")
    .map(([, room, m, reason]) => [room.name, m.text, reason]);

  it("a hidden tab is told of a mention in a joined room, once, and not of other talk", async () => {
    const t = await hiddenAlice();
    t.socket.fire("message", message("general", 1, "bob", "lunch?"));
    t.socket.fire("message", message("general", 2, "bob", "@alice lunch?"));
    t.socket.fire("message", message("general", 2, "bob", "@alice lunch?")); // a duplicate
    t.socket.fire("message", message("general", 3, "alice", "@alice note to self"));
    assert.deepEqual(notified(t.events), [["general", "@alice lunch?", "mention"]]);
  });

  it("a DM message in a room this tab has not joined is fetched and notified", async () => {
    const t = await hiddenAlice();
    t.history["dm-1"] = [message("dm-1", 1, "bob", "are you there?")];
    t.socket.fire("room", { name: "dm-1", kind: "dm", private: true, members: ["alice", "bob"],
      last_seq: 1, last_read_seq: 0, unread: 1 });
    await settle();
    assert.deepEqual(notified(t.events), [["dm-1", "are you there?", "dm"]]);
  });

  it("a busy room's activity while a read is under way costs one more read, not one each", async () => {
    const t = await hiddenAlice();
    t.history["dm-1"] = [];
    const arrives = (seq) => {
      t.history["dm-1"].push(message("dm-1", seq, "bob", `dm ${seq}`));
      t.socket.fire("room", { name: "dm-1", kind: "dm", private: true, members: ["alice", "bob"],
        last_seq: seq, last_read_seq: 0, unread: seq });
    };
    const before = t.restCalls.length;
    arrives(1); // starts a read
    arrives(2); // while it is under way
    arrives(3);
    arrives(4);
    await settle();
    await settle();
    const reads = t.restCalls.slice(before).map(([, , q]) => q.after);
    assert.deepEqual(reads, [0, 1]); // seq 1, then everything after it
    assert.deepEqual(notified(t.events).map(([, text]) => text), ["dm 1", "dm 2", "dm 3", "dm 4"]);
  });

  it("a visible tab notifies nothing and fetches nothing", async () => {
    const t = await hiddenAlice();
    t.sync.setHidden(false);
    const before = t.restCalls.length;
    t.socket.fire("room", { name: "dm-1", kind: "dm", last_seq: 1, last_read_seq: 0, unread: 1 });
    t.socket.fire("message", message("general", 1, "bob", "@alice hi"));
    await settle();
    assert.deepEqual(notified(t.events), []);
    assert.equal(t.restCalls.length, before);
  });
});
