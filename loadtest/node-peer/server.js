// Baseline peer for the fan-out benchmark: bare Socket.IO + @socket.io/redis-adapter, speaking
// just enough of the chat contract (docs/API.md) for the locust users in ../chatload.
//
// What it is NOT: no storage, no history, no password or token checks, no validation, no rate
// limit, no presence. REST registration/login are accepted blindly and the token is the user
// name. Each message gets a per-room gapless `seq` and a global `id` from Redis INCR (one round
// trip, so the peer pays for ordering across processes as the real service does), then one
// room broadcast. That is the floor the real service (which stores and validates) is compared to.
//
// Env: PORT (default 3000), REDIS_URL (default redis://127.0.0.1:6379), NODE_ID.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const PORT = Number(process.env.PORT || 3000);
const NODE_ID = process.env.NODE_ID || `node-peer-${PORT}`;
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";
// Matches the real worker's Engine.IO limit: no payload of the contract needs more.
const MAX_HTTP_BUFFER_SIZE = 64 * 1024;

let nextUserId = 1;

function json(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

// REST: only what the locust users call before connecting.
function rest(req, res) {
  let body = "";
  req.on("data", (chunk) => { body += chunk; });
  req.on("end", () => {
    let data = {};
    try { data = body ? JSON.parse(body) : {}; } catch { return json(res, 400, { error: { code: "invalid", message: "not JSON" } }); }
    const username = String(data.username || "");
    if (req.method === "POST" && req.url === "/api/users") return json(res, 201, { id: nextUserId++, username });
    if (req.method === "POST" && req.url === "/api/tokens") return json(res, 200, { token: username, user: { id: 0, username } });
    if (req.method === "GET" && req.url === "/healthz") return json(res, 200, { ok: true, node: NODE_ID });
    return json(res, 404, { error: { code: "not_found", message: "not found" } });
  });
}

async function main() {
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  const counters = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect(), counters.connect()]);

  const httpServer = http.createServer(rest);
  const io = new Server(httpServer, {
    adapter: createAdapter(pub, sub),
    maxHttpBufferSize: MAX_HTTP_BUFFER_SIZE,
    cors: { origin: "*" },
  });

  io.use((socket, next) => {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    if (!token) return next(Object.assign(new Error("unauthorized"), { data: { code: "unauthorized" } }));
    socket.data.user = String(token);
    next();
  });

  io.on("connection", (socket) => {
    socket.emit("session", { user: socket.data.user, node: NODE_ID });

    socket.on("join", async (payload, ack) => {
      const room = String((payload && payload.room) || "");
      socket.join(`room:${room}`);
      const lastSeq = Number(await counters.get(`peer:seq:${room}`)) || 0;
      // `last_seq` is an extra field: with no history, it tells the load test where live starts.
      if (typeof ack === "function") ack({ ok: true, room, messages: [], last_seq: lastSeq });
    });

    socket.on("leave", (payload, ack) => {
      socket.leave(`room:${String((payload && payload.room) || "")}`);
      if (typeof ack === "function") ack({ ok: true });
    });

    socket.on("message", async (payload, ack) => {
      const room = String((payload && payload.room) || "");
      const [seq, id] = await Promise.all([
        counters.incr(`peer:seq:${room}`),
        counters.incr("peer:message-id"),
      ]);
      const message = {
        id, room, seq, user: socket.data.user, text: String(payload.text || ""),
        created_at: new Date().toISOString(), client_id: payload.client_id ?? null,
      };
      io.to(`room:${room}`).emit("message", message);
      if (typeof ack === "function") ack({ ok: true, message });
    });
  });

  httpServer.listen(PORT, "127.0.0.1", () => {
    console.log(`node peer ${NODE_ID} listening on http://127.0.0.1:${PORT} (redis ${REDIS_URL})`);
  });

  const stop = () => { io.close(); Promise.allSettled([pub.quit(), sub.quit(), counters.quit()]).then(() => process.exit(0)); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => { console.error(err); process.exit(1); });
