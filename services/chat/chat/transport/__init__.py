"""The Engine.IO / WebSocket layer under python-socketio: servers, frames, per-socket limits.

One job per module:

- `http_server.py`: `serve()`, the WSGI server per async mode; the deadline on a request's
  head; the origin check before a WebSocket upgrade.
- `gevent_server.py`: gevent's WSGI server and handler (head deadline, a BoundedWebSocket
  for every upgrade).
- `eventlet_server.py`: eventlet's protocol (head deadline) and its WebSocket message bound.
- `frames.py`: reading and writing WebSocket frames under gevent, within a size limit.
- `frame_cache.py`: a broadcast's text frame built once for all its recipients.
- `masking.py`: unmasking a client's payload in one C-level XOR (both servers).
- `direct_write.py`: a message frame written by the emitting greenlet when the socket's
  writer is idle (gevent, DIRECT_WEBSOCKET_WRITES).
- `lazy_writer.py`: Engine.IO's WebSocket writer started only while a socket has something
  queued, and PINGs written like direct writes (gevent, with DIRECT_WEBSOCKET_WRITES).
- `socket_limits.py`: per Engine.IO socket: bytes queued, liveness by PONG, time to
  authenticate; its queue made on first use (an idle WebSocket socket holds none:
  lazy_writer lets it go).
- `packet_filter.py`: Engine.IO/Socket.IO input no honest client sends, refused cheaply.
- `parking.py`: an open WebSocket held by a read watcher, read on a greenlet only while bytes
  arrive; the request's greenlet ends (gevent, with DIRECT_WEBSOCKET_WRITES).
- `handler_task.py`: each Engine.IO message handled on a task of its own that the reader
  waits for (the reader does not keep the handler's stack pages).
- `pings.py`: one ping task per worker for every socket (PingWheel).
- `sticky.py`: session ids tagged with SID_TAG, so nginx routes without a cookie.
- `socket_environ.py`: a connected socket's WSGI environ cut down, in place, to the keys its
  events' request contexts read (called by the namespace's connect handler).
- `drain.py`: the drain on SIGTERM.

Only `http_server.serve` imports gevent_server, eventlet_server, frames and frame_cache, in
the async mode that uses them: the other mode's server library is never imported.

Reaches into library internals, the project's whole list: this package's first, then those
outside it (cluster/, testkit). Each one's install refuses a version outside
`upstream.TESTED` (UntestedUpstream) or its own tested range, and its `test_upstream_*`
canaries (in services/chat/tests/ unless said, file in brackets) fail the day upstream
changes what it relies on; test_upstream_versions_are_the_tested_ones [test_socket_limits]
pins the exact versions.

- socket_limits, direct_write: replace `engineio.socket.Socket` (Engine.IO builds sockets as
  `socket.Socket(self, sid)`, no factory); override send/poll/receive/check_ping_timeout and
  the private `_websocket_handler`; count on the writer polling again only after a write.
  Guard: python-engineio. Canaries [test_socket_limits]:
  test_upstream_engineio_creates_sockets_through_the_module_attribute
  test_upstream_engineio_writer_polls_again_only_after_writing_its_batch
  test_upstream_engineio_websocket_loop_reads_through_wait
  test_upstream_engineio_socket_sends_through_the_queue_the_limits_count
- socket_limits, lazy_writer: Engine.IO's per-socket queue made on first use and let go when
  idle. LimitedSocket.__init__ sets what `BaseSocket.__init__` sets except `self.queue` (a
  property that makes it at the first use); LazyWriterSocket drops an idle WebSocket
  socket's queue (empty, nothing unfinished, no task in poll(); gevent/eventlet only),
  relying on Engine.IO looking `self.queue` up at each put/get/task_done/join and holding it
  across a switch only inside poll(). Guard: python-engineio (at install). Canaries
  [test_socket_limits]:
  test_upstream_engineio_socket_init_sets_what_ours_sets_and_the_queue
  test_upstream_engineio_uses_the_queue_only_to_put_get_task_done_and_join
- socket_limits, direct_write: the transport under Engine.IO's WebSocket wrapper: `_sock`
  (gevent; `_sock.handler.socket` is the TCP socket), `.socket` (eventlet). Guard:
  python-engineio, eventlet. Canaries:
  test_upstream_engineio_gevent_wrapper_holds_gevent_websockets_object_as__sock
  test_upstream_engineio_sets_read_timeouts_on_the_transports__sock_or_socket
  [test_socket_limits]; test_upstream_eventlet_websocket_holds_its_tcp_socket_as_socket
  [test_eventlet_server].
- frames: BoundedWebSocket overrides gevent-websocket's read_frame/send_frame and relies on
  receive() closing on any socket.error. Guard: gevent-websocket (at make_server).
  Canaries [test_frames], beside the crafted-bytes tests:
  test_upstream_geventwebsocket_reads_messages_frame_by_frame_through_read_frame
  test_upstream_geventwebsocket_receive_closes_on_any_socket_error_from_read_frame
- gevent_server: replaces the WebSocket gevent-websocket's upgrade_connection built
  (`self.websocket`, `environ["wsgi.websocket"]`; its own is marked closed so it writes no
  close frame). Guard: gevent-websocket. Canaries [test_gevent_server]:
  test_upstream_geventwebsocket_upgrade_builds_its_websocket_where_the_handler_swaps_it
  test_upstream_geventwebsocket_a_websocket_marked_closed_writes_nothing_when_dropped
- lazy_writer: runs a copy of python-engineio 4.15.1's private `Socket._websocket_handler`
  with the writer started on demand, below socket_limits/direct_write in the method order.
  Guard: python-engineio (at install), and the copy runs only on exactly 4.15.1 (else
  Engine.IO's own handler). Canaries [test_lazy_writer]:
  test_upstream_engineio_version_is_the_one_the_handler_was_copied_from
  test_upstream_engineio_websocket_handler_is_the_copied_code (hashes of the copied
  `_websocket_handler`, `poll`, `close`)
- gevent_server: replaces pywsgi's `handler.rfile` (made in `WSGIHandler.__init__`) by a
  reader with a 1 KiB buffer before the first read; gevent-websocket's Stream reads through
  it. Guard: gevent, gevent-websocket (at make_server). Canary [test_gevent_server]:
  test_upstream_gevent_pywsgi_handler_makes_its_reader_in_init_and_frames_read_through_it
- gevent_server, eventlet_server: the request-head deadline overrides handle_one_request with
  read_request (gevent.pywsgi) / parse_request (eventlet.wsgi). Guard: gevent, eventlet.
  Canary [test_http_server]:
  test_upstream_servers_read_a_request_head_where_the_deadline_expects
- eventlet_server: replaces `RFC6455WebSocket.Message` and `_apply_mask`. Guard: eventlet.
  Canaries [test_eventlet_server]:
  test_upstream_eventlet_bounds_messages_through_its_message_class
  test_upstream_eventlet_unmasks_through_apply_mask
- parking, gevent_server: a parked WebSocket's request returns while its connection lives.
  gevent-websocket's `run_websocket` closes `self.websocket` in its `finally` unless it is
  marked closed (park() puts a closed stand-in there); pywsgi's `WSGIHandler.handle` closes
  only a `self.socket` that is not None, and the server's `do_close` (overridden) is called
  with the socket after; the parked WebSocket's `stream`, `raw_read`, `raw_write`, `handler`
  and `environ` (gevent-websocket's attributes) are replaced; at the end the socket is read
  out through gevent's `_sock`, as pywsgi does, shut down, and closed (gevent's and `_sock`).
  park() takes what was read ahead from pywsgi's `handler.rfile` (read1 with a zero
  timeout): gevent-websocket's Stream reads through that reader and buffers nothing itself
  (canary test_upstream_gevent_pywsgi_handler_makes_its_reader_in_init_and_frames_read_through_it
  [test_gevent_server]; on a worker, test_frames_sent_with_the_handshake_are_read).
  Engine.IO deletes a closed socket from `server.sockets` when its WebSocket handler
  returns, which lazy_writer does at the parked end. Guard: gevent, gevent-websocket (at
  make_server), python-engineio (lazy_writer's
  exact version). Canaries [test_parking]:
  test_upstream_geventwebsocket_run_websocket_closes_only_a_websocket_not_marked_closed
  test_upstream_gevent_pywsgi_closes_only_the_socket_its_handler_still_holds
  test_upstream_engineio_forgets_a_closed_socket_when_its_websocket_handler_returns
- packet_filter: wraps python-socketio's `Server._handle_eio_message` (re-registered with the
  public `eio.on("message")`), reads `Server.environ`. Guard: python-socketio.
  Canaries [test_packet_filter]:
  test_upstream_socketio_dispatches_engineio_messages_through__handle_eio_message
  test_upstream_socketio_decodes_a_binary_event_header_with_its_ack_id
  test_upstream_socketio_server_api_used_to_answer_binary_events
- packet_filter: decodes an event's header without its payload by standing in for the packet
  class's `json` attribute (Packet.decode parses the payload last, with `self.json.loads`).
  Guard: python-socketio. Canary [test_packet_filter]:
  test_upstream_socketio_decodes_an_event_header_without_its_payload
- packet_filter: replaces `eio.disconnect` on the instance (a disconnect that does not wait
  for a poll). Guard: python-engineio. Canary [test_packet_filter]:
  test_upstream_engineio_disconnects_through_its_own_attribute_and_waits
- packet_filter: tells KeyError("Session is disconnected") by `"Session" in str(exc)`.
  Guard: python-engineio. Canary [test_packet_filter]:
  test_upstream_engineio_raises_keyerror_session_is_disconnected_for_a_closed_session
- packet_filter: `engineio.payload.Payload.max_decode_packets`, a class attribute. Guard:
  python-engineio. Canary [test_packet_filter]:
  test_upstream_engineio_polling_packet_limit_is_the_class_attribute_decode_reads
- pings: replaces `Socket.schedule_ping` on Engine.IO's class, sets `start_service_task`.
  Guard: python-engineio 4.x (its own check). Canaries [test_pings]:
  test_upstream_engineio_schedules_a_ping_after_the_handshake_and_after_each_pong
  test_upstream_engineio_send_ping_waits_the_interval_then_sets_last_ping_and_pings
  test_upstream_engineio_starts_no_service_task_when_told_not_to
  test_upstream_engineio_check_ping_timeout_closes_a_socket_pinged_too_long_ago
- sticky: replaces `generate_id` on the Engine.IO server instance. Guard: python-engineio
  4.x (its own check). Canary [test_sticky]:
  test_upstream_engineio_takes_the_session_id_from_generate_id
- cluster/mq (outside transport/): ShardedRedisManager subclasses python-socketio's
  `PubSubManager` beyond its `_publish`/`_listen` extension point: `emit` builds the
  envelope PubSubManager.emit publishes, `_maintain` reads `Manager.rooms` (namespace ->
  room -> sids). Guard: python-socketio (at construction). Canaries [test_mq]:
  test_upstream_emit_envelope_is_the_one_pubsub_manager_publishes
  test_upstream_socketio_manager_keeps_rooms_by_namespace_then_room_with_their_sids
  and, for realtime/notify's enter_room/leave_room of another worker's sid,
  test_upstream_room_changes_for_a_remote_sid_are_published [test_upstream_pubsub_rooms].
  Behaviour of redis-py the links are built around (not a reach):
  test_upstream_pubsub_listen_stays_blocked_on_a_quiet_channel_despite_socket_timeout
  [test_mq].
- cluster/fanout: LocalFanout.emit is python-socketio's `Manager.emit` without the relays
  (`Server._send_eio_packet`, `engineio.Server.send_packet`/`_get_socket`): it looks each
  recipient up in Engine.IO's session table (`eio.sockets`) and calls its `send`; it steps
  aside when `_send_eio_packet` is patched on the server (Flask-SocketIO's test client).
  Guard: python-socketio, python-engineio (at construction). Canaries [test_fanout]:
  test_upstream_a_broadcast_reaches_the_same_sockets_with_the_same_packets_as_managers
  test_upstream_engineio_keeps_its_sessions_in_sockets_by_sid
- cluster/rate_limit: EdgeInclusiveMemoryStorage reads `limits`' `MemoryStorage.events`
  (each key's hits, newest first, with `atime`). Guard: its own (limits 5.x, at
  construction). Canary [test_shared_state_contract]:
  test_upstream_limits_memory_storage_keeps_hits_newest_first_and_leaves_out_the_edge
- testkit.sioclient (the tests' Socket.IO client): overrides `socketio.Client`'s private
  `_engineio_client_class` and `_handle_eio_disconnect`, and relies on python-engineio's
  write loop taking batches with get(block=False). Guard: its own `sioclient.TESTED` (the
  same python-engineio and python-socketio ranges; test_the_tested_ranges_are_the_workers
  checks), at `Client()`. Canaries [services/testkit/tests/test_sioclient]:
  test_upstream_engineio_still_loses_the_stop_so_the_fix_is_still_needed
  test_upstream_socketio_client_builds_its_engineio_client_from__engineio_client_class
- chatload.client (the load generator's client): overrides `socketio.Client`'s private
  `_engineio_client_class` and `engineio.Client._trigger_event` (message handlers run in the
  read loop). No guard (a benchmark tool, not the product). Canaries [loadtest/tests/test_client]:
  test_upstream_socketio_client_builds_its_engineio_client_through__engineio_client_class
  test_upstream_engineio_client_runs_message_handlers_through__trigger_event_inline_here
- handler_task: not a reach; python-engineio's eventlet task `join()` returns at once for a
  task not yet started, so it waits on an event. Canary [test_handler_task]:
  test_upstream_engineio_eventlet_join_returns_before_an_unstarted_task_ran

Supported hooks used instead of a reach: python-engineio's callable `cors_allowed_origins`
(origins.OriginPolicy; was `eio._cors_allowed_origins`). Canaries [test_origins]:
test_upstream_engineio_asks_a_callable_policy_for_the_check_and_the_cors_header and
test_upstream_engineio_same_origin_rule_is_the_one_origins_copies. gevent's
`socket.send(data, 0, timeout=0.0)` (was the OS socket under gevent's `_sock`). Canary
[test_frames]: test_upstream_gevent_send_with_a_zero_timeout_raises_instead_of_waiting.
prometheus_client's `Gauge.track_inprogress` (drain). socket_environ changes, from the connect
handler, the environ dict that handler is given (python-socketio's public `get_environ` returns
it for every event; not a reach). Canary [test_socket_environ]:
test_upstream_socketio_keeps_the_dict_the_connect_handler_was_given.
"""
