// Idle clients for the connection-density benchmark (loadtest/chatload/density.py): one
// process holds COUNT WebSocket connections of the official socket.io client to one server,
// each with its own token, and sends nothing; the server only pings (every 25 s by default).
//
//   node idle-clients.js --target http://127.0.0.1:5000 --tokens tokens.json --first 0 \
//        --count 2000 --concurrency 100 --connect-timeout 30 --max-seconds 600 \
//        [--transport websocket|polling]
//
// tokens.json is a JSON list; connection i (first <= i < first + count) uses token
// i mod its length. Talks to its parent over stdio, one JSON line per event:
//   stdout {"event":"connected","ok":N,"errors":E,"first_error":"...","started":ms,"finished":ms}
//   stdin  "report"  -> stdout {"event":"report","open":N,"disconnects":D,"reasons":{...}}
//   stdin  "exit" or end of input -> closes every socket and exits 0
// A connection counts as ok when the server's `session` event arrived (the chat and the Node
// peer both send it after accepting the token). Bounded: at most --max-seconds alive.
"use strict";

const fs = require("node:fs");
const readline = require("node:readline");
const { io } = require("socket.io-client");

function args() {
  const out = { target: "", tokens: "", first: 0, count: 100, concurrency: 100, "connect-timeout": 30, "max-seconds": 600, transport: "websocket" };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, "")] = argv[i + 1];
  for (const k of ["first", "count", "concurrency", "connect-timeout", "max-seconds"]) out[k] = Number(out[k]);
  return out;
}

const opt = args();
const tokens = JSON.parse(fs.readFileSync(opt.tokens, "utf8"));
const sockets = [];
const state = { disconnects: 0, reasons: {} };
let firstError = null;

function say(obj) { process.stdout.write(JSON.stringify(obj) + "\n"); }

function connectOne(i) {
  return new Promise((resolve) => {
    // forceNew: one Engine.IO connection per socket (the default multiplexes by URL).
    const socket = io(opt.target, {
      auth: { token: String(tokens[i % tokens.length]) },
      transports: [opt.transport],
      reconnection: false,
      forceNew: true,
      timeout: opt["connect-timeout"] * 1000,
    });
    let settled = false;
    const done = (ok, why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!ok && firstError === null) firstError = why;
      if (ok) sockets.push(socket); else socket.close();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false, "no session event in time"), opt["connect-timeout"] * 1000);
    socket.once("session", () => {
      socket.on("disconnect", (reason) => {
        state.disconnects += 1;
        state.reasons[reason] = (state.reasons[reason] || 0) + 1;
      });
      done(true);
    });
    socket.once("connect_error", (err) => done(false, `connect_error: ${err && err.message}`));
  });
}

async function main() {
  const started = Date.now();
  let next = opt.first, ok = 0, errors = 0;
  const end = opt.first + opt.count;
  async function lane() {
    while (next < end) {
      const i = next++;
      if (await connectOne(i)) ok += 1; else errors += 1;
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opt.concurrency, opt.count)) }, lane));
  say({ event: "connected", ok, errors, first_error: firstError, started, finished: Date.now() });
}

function shutdown(code) {
  for (const s of sockets) s.close();
  process.exit(code);
}

const lifetime = setTimeout(() => shutdown(3), opt["max-seconds"] * 1000);
lifetime.unref();
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = line.trim();
  if (cmd === "report") {
    const open = sockets.filter((s) => s.connected).length;
    say({ event: "report", open, disconnects: state.disconnects, reasons: state.reasons });
  } else if (cmd === "exit") {
    shutdown(0);
  }
}).on("close", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));

main().catch((err) => { say({ event: "fatal", error: String(err) }); process.exit(2); });
