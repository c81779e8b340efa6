"""Prometheus metrics of one worker, served at /metrics."""

from __future__ import annotations

import gc

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)

registry = CollectorRegistry()

connected_clients = Gauge(
    "chat_connected_clients", "Socket.IO clients connected to this worker", registry=registry
)
messages_stored = Counter(
    "chat_messages_stored_total", "Messages stored by this worker", registry=registry
)
events_received = Counter(
    "chat_events_received_total", "Socket.IO events received, by name", ["event"], registry=registry
)
events_refused = Counter(
    "chat_events_refused_total",
    "Events answered with an error, by code",
    ["event", "code"],
    registry=registry,
)
handler_seconds = Histogram(
    "chat_handler_seconds",
    "Time spent in a Socket.IO or REST handler",
    ["handler"],
    # Chat handlers should finish in milliseconds; the upper buckets catch stalls.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=registry,
)
http_requests = Counter(
    "chat_http_requests_total",
    "REST requests, by endpoint and status",
    ["endpoint", "status"],
    registry=registry,
)
handlers_in_progress = Gauge(
    "chat_handlers_in_progress",
    "HTTP requests (WebSocket connections included) and Socket.IO event handlers running now",
    registry=registry,
)
websockets_parked = Gauge(
    "chat_websockets_parked",
    "Open WebSockets held by a read watcher instead of a greenlet (gevent; transport/parking.py)",
    registry=registry,
)
protocol_errors = Counter(
    "chat_protocol_errors_total",
    "Engine.IO messages dropped as no valid Socket.IO packet of this application, by kind",
    ["kind"],
    registry=registry,
)
sockets_cut = Counter(
    "chat_sockets_cut_total",
    "Engine.IO sessions whose transport this worker closed, by reason (socket_limits.py): "
    "send_queue, ping_timeout, unauthenticated",
    ["reason"],
    registry=registry,
)
mq_heartbeat_age = Gauge(
    "chat_mq_heartbeat_age_seconds",
    "Seconds since this worker last heard its own heartbeat through the message queue",
    registry=registry,
)
mq_received = Counter(
    "chat_mq_received_total",
    "Messages this worker's message-queue listener received: kind=room (emits to a room's "
    "channel) or kind=control (the rest: sid-targeted emits, callbacks, heartbeats, ...)",
    ["kind"],
    registry=registry,
)
for _kind in ("room", "control"):  # both series exist from the start, at 0
    mq_received.labels(_kind)
mq_subscriptions = Gauge(
    "chat_mq_subscriptions",
    "Room channels this worker is subscribed to (or subscribing) in the message queue",
    registry=registry,
)
# The standard process and garbage-collector series (process_resident_memory_bytes,
# process_cpu_seconds_total, process_open_fds, python_gc_collections_total{generation}, ...):
# prometheus_client's own collectors, which its default registry has and this one does not.
GCCollector(registry=registry)
ProcessCollector(registry=registry)
gc_frozen_objects = Gauge(
    "chat_gc_frozen_objects",
    "Objects in the garbage collector's permanent generation: the worker's start-up, frozen "
    "once before it serves (garbage.py)",
    registry=registry,
)
gc_frozen_objects.set_function(gc.get_freeze_count)
