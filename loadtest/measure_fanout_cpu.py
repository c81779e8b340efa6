"""The worker CPU one fan-out delivery costs: one worker, one room of N joined WebSockets.

    .venv/bin/python loadtest/measure_fanout_cpu.py [--members 1000] [--messages 300]
        [--rounds 2] [--rate 20] [--profile FILE.raw]

Starts a private redis-server and one real worker (gevent, the Redis message queue, SQLite in
a temporary directory), makes `--members` users members of room `big`, connects each over a
raw WebSocket (one TCP connection each, Engine.IO/Socket.IO spoken by hand, read by one
selector thread here that answers PINGs) and joins it to `big`. Then, `--rounds` times, posts
`--messages` messages over REST at `--rate` per second to room `small` (only the sender is a
member) and then to `big`, and reads the worker's user+system CPU (/proc) around each batch,
after every delivery has arrived. Prints per round (with the latency in `big`: receive time
minus the stamp the sender put in the text before its POST, on the first 100 sessions):

- CPU per message in `small` and in `big` (ms);
- µs per delivery: (big - small) / members, the cost of each recipient (the handler, storing
  and the PUBLISH cancel out), and big / deliveries (everything included).

`--profile FILE.raw` runs `py-spy record --format raw --nonblocking -r 200` on the worker
during the `big` batches (group with `python -m chatload.pyspy_groups FILE.raw`).
Run under `flock /work/wt/bench.lock` (a measurement). Bounded: a few minutes at most.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from chat.domain.accounts import Principal, issue_token
from chatload.members import insert_members
from testkit.clients import register
from testkit.processes import HARNESS_SECRET_KEY, ChatWorker, RedisServer, cpu_seconds

# Sessions opened at once: the worker's join (history read, presence) dominates.
CONNECT_THREADS = 8
LATENCY_SAMPLED = 100


def _frame(text: str) -> bytes:
    """A masked client text frame (the mask is zero: XOR with it changes nothing)."""
    payload = text.encode()
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return b"\x81" + length + b"\0\0\0\0" + payload


class Receivers:
    """N raw WebSocket sessions joined to one room; a thread reads them all and counts."""

    def __init__(self, host: str, port: int, tokens: list[str], room: str) -> None:
        self.socks: list[socket.socket] = []
        self.messages = 0
        # Latency (receive time - the send stamp in the text, ms) on the first LATENCY_SAMPLED
        # sessions only: parsing every delivery would cost this process more than the worker.
        self.latencies: list[float] = []
        self.sampled: set[int] = set()
        self.dropped = 0
        self.buffers: dict[int, bytearray] = {}
        self.sel = selectors.DefaultSelector()
        self.running = True
        # Reading (and answering PINGs) from the first join on: connecting them all takes
        # longer than Engine.IO's ping interval plus timeout.
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        with ThreadPoolExecutor(CONNECT_THREADS) as pool:
            for s, rest in pool.map(lambda t: self._open(host, port, t, room), tokens):
                s.setblocking(False)
                self.buffers[s.fileno()] = rest  # what came after the join's ack (presence)
                if len(self.socks) < LATENCY_SAMPLED:
                    self.sampled.add(s.fileno())
                self.socks.append(s)
                self.sel.register(s, selectors.EVENT_READ)

    @staticmethod
    def _read_frames(sock: socket.socket, buf: bytearray, until: str) -> None:
        while True:
            while len(buf) < 2 or len(buf) < _frame_len(buf):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed by the server")
                buf += chunk
            n = _frame_len(buf)
            text = _payload(buf, n).decode()
            del buf[:n]
            if text == "2":
                sock.sendall(_frame("3"))
            elif text.startswith(until):
                return

    def _open(self, host: str, port: int, token: str, room: str) -> tuple[socket.socket, bytearray]:
        sock = socket.create_connection((host, port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        buf = bytearray()
        self._read_frames(sock, buf, "0")
        sock.sendall(_frame("40" + json.dumps({"token": token})))
        self._read_frames(sock, buf, "40")
        sock.sendall(_frame("421" + json.dumps(["join", {"room": room}])))
        self._read_frames(sock, buf, "431")
        return sock, buf

    def _run(self) -> None:
        while self.running:
            if not self.socks:
                time.sleep(0.05)
                continue
            # epoll's register/unregister may run while another thread waits in select.
            for key, _ in self.sel.select(timeout=0.2):
                sock = key.fileobj
                buf = self.buffers[sock.fileno()]  # type: ignore[union-attr]
                try:
                    chunk = sock.recv(262144)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    self.dropped += 1
                    self.sel.unregister(sock)
                    continue
                buf += chunk
                while len(buf) >= 2:
                    n = _frame_len(buf)
                    if len(buf) < n:
                        break
                    payload = _payload(buf, n)
                    if payload.startswith(b'42["message"'):
                        self.messages += 1
                        if sock.fileno() in self.sampled:  # type: ignore[union-attr]
                            at = payload.find(b'"text":"t')
                            if at >= 0:
                                sent = float(payload[at + 9 : at + 26])
                                self.latencies.append((time.time() - sent) * 1e3)
                    elif payload == b"2":
                        sock.sendall(_frame("3"))  # type: ignore[union-attr]
                    del buf[:n]

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        for s in self.socks:
            s.close()


def _frame_len(buf: bytearray) -> int:
    """The length of the (unmasked, server-sent) frame at the start of `buf`; 2+ bytes there."""
    n = buf[1] & 0x7F
    if n < 126:
        return 2 + n
    if n == 126:
        return 4 + int.from_bytes(buf[2:4], "big") if len(buf) >= 4 else 1 << 30
    return 10 + int.from_bytes(buf[2:10], "big") if len(buf) >= 10 else 1 << 30


def _payload(buf: bytearray, n: int) -> bytes:
    m = buf[1] & 0x7F
    start = 2 if m < 126 else 4 if m == 126 else 10
    return bytes(buf[start:n])


def post_batch(
    worker: ChatWorker,
    session: requests.Session,
    room: str,
    count: int,
    rate: float,
    receivers: Receivers,
    owed: int,
) -> float:
    """CPU seconds the worker spent while `count` messages were posted and delivered."""
    before_msgs = receivers.messages
    receivers.latencies.clear()
    before = cpu_seconds(worker.pid)
    started = time.monotonic()
    for i in range(count):
        r = session.post(
            f"{worker.url}/api/rooms/{room}/messages",
            json={"text": f"t{time.time():.6f}".ljust(128, "x")},
        )
        r.raise_for_status()
        time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    deadline = time.monotonic() + 30
    while receivers.messages - before_msgs < owed and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    got = receivers.messages - before_msgs
    if got != owed or receivers.dropped:
        print(f"  WARNING: {room}: {got} deliveries, {owed} owed, {receivers.dropped} dropped")
    return cpu_seconds(worker.pid) - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--profile", default="")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the worker")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'chat.db'}"
        redis_server = RedisServer(workdir)
        worker = receivers = None
        try:
            worker = ChatWorker(
                workdir,
                env={
                    "DATABASE_URL": url,
                    "REDIS_URL": redis_server.url,
                    "RATE_LIMIT_MESSAGES": "1000000",
                    **dict(kv.split("=", 1) for kv in args.env),
                },
            )
            _, token = register(worker.url, "sender")
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {token}"
            for room in ("big", "small"):
                session.post(f"{worker.url}/api/rooms", json={"name": room}, timeout=10)
            ids = insert_members(url, "big", args.members)
            tokens = [issue_token(Principal(uid, name), HARNESS_SECRET_KEY) for uid, name in ids]
            t0 = time.monotonic()
            receivers = Receivers("127.0.0.1", worker.port, tokens, "big")
            print(f"{args.members} joined in {time.monotonic() - t0:.1f} s; load {_load()}")
            time.sleep(3)
            post_batch(worker, session, "big", 20, args.rate, receivers, 20 * args.members)
            for r in range(args.rounds):
                small = post_batch(worker, session, "small", args.messages, args.rate, receivers, 0)
                spy = None
                if args.profile:
                    spy = subprocess.Popen(
                        [
                            str(Path(sys.executable).with_name("py-spy")),
                            "record",
                            "--format",
                            "raw",
                            "--nonblocking",
                            "-r",
                            "200",
                            "-p",
                            str(worker.pid),
                            "-o",
                            f"{args.profile}.{r}",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    time.sleep(1)
                big = post_batch(
                    worker,
                    session,
                    "big",
                    args.messages,
                    args.rate,
                    receivers,
                    args.messages * args.members,
                )
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(30)
                per_small = small / args.messages
                per_big = big / args.messages
                print(
                    f"round {r + 1}: CPU per message small {per_small * 1e3:.2f} ms,"
                    f" big {per_big * 1e3:.2f} ms; per delivery"
                    f" marginal {(per_big - per_small) / args.members * 1e6:.2f} us,"
                    f" all-in {per_big / args.members * 1e6:.2f} us;"
                    f" latency ms p50 {_pct(receivers.latencies, 50):.1f}"
                    f" p99 {_pct(receivers.latencies, 99):.1f}; load {_load()}"
                )
        finally:
            if receivers is not None:
                receivers.close()
            if worker is not None:
                worker.stop()
            redis_server.stop()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


if __name__ == "__main__":
    main()
