// The browser-like case of the fan-out benchmark: socket.io-client on Node offers
// `permessage-deflate; client_max_window_bits` in the WebSocket handshake, as browsers do; the
// python websocket-client behind the locust users offers no extension at all. Run this against
// a server to see what a browser's offer costs it (FANOUT-NOTES.md: eventlet compresses every
// broadcast frame once per recipient when it accepts the offer).
//
//   node browser-like-client.js --targets http://127.0.0.1:8080 --users 300 --senders 5 \
//        --rate 4 --duration 30 --message-size 128 --grace 5 [--room NAME]
//
// Same measurements as the locust suite (chatload): fan-out latency = receive time - the send
// time stamped in the text, split same-node / cross-node by the `session` event's node; ack
// latency; lost / duplicated by (room, seq) after a grace period. One room of every user.
// It also prints which extension each server actually negotiated.
"use strict";

const { io } = require("socket.io-client");

function args() {
  const out = { targets: "http://127.0.0.1:8080", users: 50, senders: 5, rate: 2, duration: 30, "message-size": 128, grace: 5, room: "", password: "correct horse battery" };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, "")] = argv[i + 1];
  for (const k of ["users", "senders", "rate", "duration", "message-size", "grace"]) out[k] = Number(out[k]);
  out.targets = String(out.targets).split(",").map((t) => t.trim().replace(/\/$/, "")).filter(Boolean);
  return out;
}

const opt = args();
const runId = `bl${Math.random().toString(16).slice(2, 10)}`;
const room = opt.room || `${runId}-all`;

async function post(base, path, body) {
  const r = await fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json().catch(() => ({})) };
}

function percentile(sorted, p) {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

async function startUser(index) {
  const base = opt.targets[index % opt.targets.length];
  const username = `${runId}-u${index}`;
  const creds = { username, password: opt.password };
  const reg = await post(base, "/api/users", creds);
  if (reg.status !== 201 && reg.status !== 409) throw new Error(`register ${reg.status}`);
  const login = await post(base, "/api/tokens", creds);
  if (login.status !== 200) throw new Error(`login ${login.status}`);
  const socket = io(base, { auth: { token: login.body.token }, transports: ["websocket"], reconnection: false });
  const user = { index, username, socket, node: null, baseline: 0, received: new Set(), latencies: { "same-node": [], "cross-node": [] }, dup: 0 };
  socket.on("message", (m) => {
    const now = Date.now();
    let stamp;
    try { stamp = JSON.parse(m.text); } catch { return; }
    if (stamp.r !== runId || m.seq <= user.baseline) return;
    if (user.received.has(m.seq)) { user.dup += 1; return; }
    user.received.add(m.seq);
    user.latencies[stamp.n === user.node ? "same-node" : "cross-node"].push(now - stamp.t * 1000);
  });
  await new Promise((resolve, reject) => {
    socket.once("session", (s) => { user.node = s.node; resolve(); });
    socket.once("connect_error", reject);
  });
  const ws = socket.io.engine.transport.ws;
  user.extensions = (ws && ws.extensions) || "";
  const ack = await socket.timeout(15000).emitWithAck("join", { room });
  if (!ack.ok) throw new Error(`join ${JSON.stringify(ack)}`);
  user.baseline = Math.max(0, ...ack.messages.map((m) => m.seq), Number(ack.last_seq || 0));
  return user;
}

async function main() {
  console.log(`browser-like run ${runId}: ${opt.users} users on ${opt.targets.join(",")}, ${opt.senders} senders x ${opt.rate} msg/s, ${opt.duration} s`);
  const users = [];
  for (let i = 0; i < opt.users; i += 10) {  // ten at a time: registration hashes passwords
    users.push(...await Promise.all(Array.from({ length: Math.min(10, opt.users - i) }, (_, k) => startUser(i + k))));
  }
  const negotiated = {};
  for (const u of users) negotiated[u.extensions || "(none)"] = (negotiated[u.extensions || "(none)"] || 0) + 1;
  console.log(`all joined; WebSocket extensions negotiated: ${JSON.stringify(negotiated)}`);

  const acks = [];
  let lastSeq = 0, ackFailures = 0;
  const step = Math.max(1, Math.floor(opt.users / Math.max(1, opt.senders)));
  const senders = users.filter((u) => u.index % step === 0).slice(0, opt.senders);
  const timers = senders.map((u) => setInterval(() => {
    const stamp = { r: runId, t: Date.now() / 1000, n: u.node, u: u.index, p: "" };
    stamp.p = "x".repeat(Math.max(0, opt["message-size"] - JSON.stringify(stamp).length));
    const sent = Date.now();
    u.socket.timeout(10000).emitWithAck("message", { room, text: JSON.stringify(stamp), client_id: `${runId}-${u.index}-${sent}-${Math.random()}` })
      .then((ack) => { if (ack.ok) { acks.push(Date.now() - sent); lastSeq = Math.max(lastSeq, ack.message.seq); } else ackFailures += 1; })
      .catch(() => { ackFailures += 1; });
  }, 1000 / opt.rate));
  const started = Date.now();
  await new Promise((r) => setTimeout(r, opt.duration * 1000));
  timers.forEach(clearInterval);
  await new Promise((r) => setTimeout(r, opt.grace * 1000));

  let owed = 0, delivered = 0, dup = 0;
  const all = { "same-node": [], "cross-node": [] };
  for (const u of users) {
    owed += Math.max(0, lastSeq - u.baseline);
    delivered += [...u.received].filter((s) => s <= lastSeq).length;
    dup += u.dup;
    for (const k of Object.keys(all)) all[k].push(...u.latencies[k]);
    u.socket.close();
  }
  const rows = { all: [...all["same-node"], ...all["cross-node"]], ...all };
  console.log(`deliveries/s ${(rows.all.length / ((Date.now() - started) / 1000 - opt.grace)).toFixed(1)}   messages acked ${acks.length}`);
  console.log("fan-out ms      count     p50     p95     p99      max");
  for (const [name, values] of Object.entries(rows)) {
    const s = values.sort((a, b) => a - b);
    console.log(`${name.padEnd(12)}${String(s.length).padStart(9)}${[0.5, 0.95, 0.99].map((p) => String(Math.round(percentile(s, p))).padStart(8)).join("")}${String(Math.round(s[s.length - 1] || 0)).padStart(9)}`);
  }
  const ackSorted = acks.sort((a, b) => a - b);
  console.log(`ack p99 ms ${Math.round(percentile(ackSorted, 0.99))}   ack failures ${ackFailures}`);
  console.log(`lost ${owed - delivered}   duplicated ${dup}   (owed ${owed} live deliveries)`);
  process.exit(owed - delivered || dup || ackFailures ? 1 : 0);
}

main().catch((err) => { console.error(err); process.exit(2); });
