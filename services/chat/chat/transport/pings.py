"""Engine.IO's server pings from one task per worker instead of one per socket.

python-engineio 4 sends each socket's PING from a background task of its own: every PONG
starts a new one (`Socket.schedule_ping`) that sleeps `ping_interval` and sends the PING
(`Socket._send_ping`). Under gevent that is a greenlet and a timer per idle connection, a new
greenlet every 25 s per connection, and objects that live 25 s: long enough to reach the
garbage collector's oldest generation, whose full collections (over every object of every
connection) then came every half minute. At 8,000 idle connections that was most of an idle
worker's CPU (docs/BENCHMARKS.md, "Connection density").

Here a `PingWheel` per Engine.IO server keeps the sockets waiting for their next PING in one
queue. Every socket waits the same `ping_interval`, so the queue is in due order by
construction: appending is O(1), and one task wakes every `TICK_SECONDS` and pings those due.
What Engine.IO's `_send_ping` did after its sleep is done the same way (skip a closing or
closed socket; set `last_ping`; send a PING packet), at most a tick later: far inside the
client's allowance of `pingInterval + pingTimeout` (45 s by default).

The wheel also does the work of Engine.IO's service task, which it turns off (the switch
`monitor_clients=False` sets): that task visited every socket once per ping_timeout, one
wake-up per socket (400 a second at 8,000 sockets), to close those whose PONG is overdue and
drop closed ones from the server's table. Here each pinged socket goes on a second queue,
also in due order, and is checked once, ping_timeout (plus a tick) after its PING; every
open socket is on one of the two queues, so a closed one is dropped within an interval.

Relies on python-engineio 4.x calling `schedule_ping` after the handshake and on each PONG,
on what `_send_ping` and `check_ping_timeout` do, and on `start_service_task`;
`test_upstream_engineio_*` in tests/test_pings.py check that, and `install` refuses another
major version (tested on 4.15.1).
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

import engineio
import engineio.socket
from engineio import packet as eio_packet

from . import upstream

log = logging.getLogger(__name__)

# How late a PING may go out, to batch the wake-ups: 8,000 sockets pinged every 25 s are
# 320 PINGs a second, sent in 5 wake-ups instead of 320. The client allows 45 s.
TICK_SECONDS = 0.2
# PINGs sent between two yields to other tasks: sockets that connected in a burst fall due
# in the same tick; 256 queue puts take well under a millisecond.
PINGS_PER_YIELD = 256


_EngineIOSocket: Any = upstream.engineio_socket_class()  # python-engineio ships no types
_engineio_schedule_ping = _EngineIOSocket.schedule_ping


class PingWheel:
    """The sockets of one Engine.IO server waiting for their next PING, in due order."""

    def __init__(self, eio_server: engineio.Server) -> None:
        self.server = eio_server
        self._due: collections.deque = collections.deque()  # (monotonic due time, socket)
        # Pinged sockets, checked for their PONG once ping_timeout has passed (the job of
        # Engine.IO's service task, which this replaces: see `install`).
        self._pong_due: collections.deque = collections.deque()
        self._task = None

    def __len__(self) -> int:
        """Sockets waiting for their next PING."""
        return len(self._due)

    @property
    def awaiting_pong(self) -> int:
        """Pinged sockets not checked yet for their PONG."""
        return len(self._pong_due)

    def add(self, sock: engineio.socket.Socket) -> None:
        """PING `sock` once `ping_interval` seconds have passed (Engine.IO's _send_ping)."""
        self._due.append((time.monotonic() + self.server.ping_interval, sock))
        if self._task is None:  # started with the first socket, as Engine.IO's service task
            self._task = self.server.start_background_task(self._run)

    def ping_due(self, now: float) -> int:
        """Send the PINGs due at `now`; returns how many went out."""
        due, sent = self._due, 0
        pong_at = now + self.server.ping_timeout + TICK_SECONDS
        while due and due[0][0] <= now:
            _, sock = due.popleft()
            if sock.closing or sock.closed:
                self._pong_due.append((now, sock))  # dropped from the table once closed
                continue
            sock.last_ping = time.time()
            self._pong_due.append((pong_at, sock))
            try:
                sock.send(eio_packet.Packet(eio_packet.PING))
                sent += 1
                if sent % PINGS_PER_YIELD == 0:
                    self.server.sleep(0)
            except Exception:  # one socket's failure must not stop every other socket's pings
                log.exception("sending a PING to %s failed", sock.sid)
        return sent

    def check_pongs(self, now: float) -> int:
        """Close the sockets whose PONG is overdue at `now`; returns how many were closed.

        What Engine.IO's service task did for every socket in turn: `check_ping_timeout`
        closes a socket pinged more than ping_timeout ago and not answered since (a PONG
        sets last_ping to None and puts the socket back on the PING queue); a closed socket
        leaves the server's table (a long-polling session that nobody polls any more would
        stay in it otherwise).
        """
        pending, closed, later = self._pong_due, 0, []
        while pending and pending[0][0] <= now:
            _, sock = pending.popleft()
            if sock.closed:
                self._forget(sock)
            elif sock.closing:
                # Being closed (possibly by a task of its own): dropped once it is closed.
                later.append(sock)
            elif sock.last_ping:
                try:
                    if not sock.check_ping_timeout():
                        closed += 1
                    # Closed now, or soon (a close may run in a task of its own), or not
                    # overdue by Engine.IO's wall clock yet (it moved): look again next tick.
                    later.append(sock)
                except Exception:
                    log.exception("checking %s for its PONG failed", sock.sid)
        for sock in later:
            if sock.closed:
                self._forget(sock)
            else:
                pending.append((now + TICK_SECONDS, sock))
        return closed

    def _forget(self, sock: engineio.socket.Socket) -> None:
        if sock.closed and self.server.sockets.get(sock.sid) is sock:
            del self.server.sockets[sock.sid]

    def _run(self) -> None:
        while True:
            try:
                now = time.monotonic()
                self.ping_due(now)
                self.check_pongs(now)
            except Exception:
                log.exception("ping wheel failed; retrying")
            self.server.sleep(TICK_SECONDS)


def _schedule_ping(self: engineio.socket.Socket) -> None:
    """Engine.IO's schedule_ping, with the wait on the server's PingWheel when it has one."""
    wheel = getattr(self.server, "chat_ping_wheel", None)
    if wheel is None:
        return _engineio_schedule_ping(self)
    # Engine.IO's rule: only schedule a new ping if the previous ping wait cycle completed.
    if self.last_ping:
        self.last_ping = None
        wheel.add(self)
    return None


def install(eio_server: engineio.Server) -> PingWheel:
    """Ping every socket of `eio_server` (an engineio.Server) from one PingWheel task.

    Raises upstream.UntestedUpstream on a python-engineio outside the tested range.
    """
    upstream.require(
        "python-engineio", "the ping wheel (pinging from Socket.schedule_ping/_send_ping)"
    )
    wheel = getattr(eio_server, "chat_ping_wheel", None)
    if wheel is None:
        wheel = eio_server.chat_ping_wheel = PingWheel(eio_server)
    # The wheel checks the PONGs: no service task (what `monitor_clients=False` sets). That
    # task woke once per socket every ping_timeout (400 wake-ups a second at 8,000 sockets).
    eio_server.start_service_task = False
    _EngineIOSocket.schedule_ping = _schedule_ping
    return wheel
