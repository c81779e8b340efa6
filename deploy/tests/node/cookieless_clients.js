// Cookie-less clients of the chat: the official socket.io-client on Node with its default
// options (long-polling first, then the upgrade to WebSocket; Node keeps no cookies), as a bot
// or a mobile app would use it. Driven by deploy/tests/test_cluster_cookieless.py.
//
//   NODE_PATH=loadtest/node-peer/node_modules node cookieless_clients.js '<json>'
//   json: {url, room, messages, clients: [{name, token, pollingOnly}]}
//
// Each client connects, joins the room and sends `messages` messages one after the other,
// each awaiting its ack. Prints one JSON report: per client the node (from the `session`
// event), the Engine.IO sid, the transports used, and every error seen.
"use strict";

const { io } = require("socket.io-client");

const ACK_TIMEOUT_MS = 15000;
const CONNECT_TIMEOUT_MS = 20000;

function connected(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("connect timeout")), CONNECT_TIMEOUT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function runClient(config, client) {
  const report = {
    name: client.name, node: null, sid: null, transports: [], acked: 0,
    errors: [], connectErrors: [], disconnects: [],
  };
  const options = { auth: { token: client.token } };
  if (client.pollingOnly) options.transports = ["polling"];
  const socket = io(config.url, options);
  socket.on("session", (data) => { report.node = data.node; });
  socket.on("connect_error", (err) => report.connectErrors.push(String(err && err.message)));
  socket.on("disconnect", (reason) => report.disconnects.push(reason));
  socket.io.on("open", () => {
    const engine = socket.io.engine;
    report.sid = engine.id;
    report.transports.push(engine.transport.name);
    engine.on("upgrade", (transport) => report.transports.push(transport.name));
  });
  try {
    await connected(socket);
    const join = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("join", { room: config.room });
    if (!join.ok) report.errors.push({ join });
    for (let i = 0; i < config.messages; i += 1) {
      const payload = { room: config.room, text: `${client.name} ${i}`, client_id: `${client.name}-${i}` };
      try {
        const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("message", payload);
        if (ack.ok) report.acked += 1;
        else report.errors.push({ message: i, ack });
      } catch (err) {
        report.errors.push({ message: i, error: String(err && err.message) });
      }
    }
  } catch (err) {
    report.errors.push({ error: String(err && err.message) });
  }
  // The disconnect the client asks for is not an error; anything before it is.
  const disconnects = report.disconnects.length;
  socket.disconnect();
  report.disconnects = report.disconnects.slice(0, disconnects);
  return report;
}

async function main() {
  const config = JSON.parse(process.argv[2]);
  const reports = await Promise.all(config.clients.map((client) => runClient(config, client)));
  process.stdout.write(JSON.stringify(reports) + "\n");
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(String(err && err.stack) + "\n");
    process.exit(1);
  },
);
