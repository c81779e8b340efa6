"""A broadcast to this worker's sockets, each handed the one packet without three relays.

python-socketio's `Manager.emit` encodes a broadcast's packet once, then for each recipient
calls `Server._send_eio_packet`, which calls `engineio.Server.send_packet`, which calls
`_get_socket` (a try/except around the session table) and only then the socket's `send`:
three Python calls per recipient before any work (py-spy of a 1,000-member room: 3-4 % of
the worker's CPU, beside ~35 % in the send() syscalls). `LocalFanout.emit` looks each
recipient's socket up in Engine.IO's session table itself and calls its `send`. With
LazyWriterSocket.send's direct call for messages, the worker's CPU per delivery went from
22.7 to 19.6 µs (means of 6 and 6 batches in three alternating pairs of runs,
loadtest/measure_fanout_cpu.py, 2026-11-30; lower in every pair, the runs spread by ~2 µs).

What stays as upstream's: the packet (built and encoded as `Manager.emit` builds it, once);
who gets it (`get_participants`, which copies the room's table at its first step, so a
socket that disconnects midway changes nothing in the loop) and `skip_sid`; the order of
recipients; a session that is gone or closed takes Engine.IO's own `send_packet` (it forgets
a closed session and logs the miss). Emits with a callback (a packet per recipient) or with
binary data (several packets) take `Manager.emit` unchanged.
"""

from __future__ import annotations

from typing import Any

from engineio import packet as eio_packet
from socketio import packet as sio_packet
from socketio.manager import Manager

from ..transport import upstream


class LocalFanout(Manager):
    """python-socketio's Manager, delivering a broadcast straight to each socket's `send`.

    Placed after PubSubManager in a subclass's bases (ShardedRedisManager), it also serves
    the emits PubSubManager relays from the queue (its `_handle_emit` calls `super().emit`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Beyond Manager's own methods: Engine.IO's session table (`eio.sockets`, sid ->
        # Socket, as socket_limits' sweep reads it). Canaries in tests/test_fanout.py.
        upstream.require("python-socketio", "cluster/fanout.LocalFanout (Manager.emit's packet)")
        upstream.require("python-engineio", "cluster/fanout.LocalFanout (Server.sockets)")
        super().__init__(*args, **kwargs)

    def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        """Manager.emit: `event` with `data` to `room` (a sid, a room, a list, or everyone).

        Returns nothing; recipients not connected to this worker are not its business.
        """
        room = to or room
        server = self.server
        # A test harness that stands in for the server's send (Flask-SocketIO's test client
        # patches `_send_eio_packet` on the instance) gets every packet through it.
        if callback or namespace not in self.rooms or "_send_eio_packet" in vars(server):
            return super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
            )
        # As Manager.emit: a tuple is several arguments, None none, anything else one.
        if isinstance(data, tuple):
            args = list(data)
        elif data is not None:
            args = [data]
        else:
            args = []
        encoded = server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        if isinstance(encoded, list):  # binary: a header and its attachments
            return super().emit(event, data, namespace, room=room, skip_sid=skip_sid, **kwargs)
        pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        eio = server.eio
        sockets = eio.sockets
        # get_participants iterates a copy of the room's table, taken at the first step:
        # a socket leaving midway changes nothing here. Not list()ed: the items iterator
        # reuses one tuple, where a list would allocate one per recipient.
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed:
                eio.send_packet(eio_sid, pkt)  # Engine.IO's way: forget it, log the miss
            else:
                socket.send(pkt)
        return None
