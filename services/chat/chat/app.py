"""The app factory: bind the extensions, the REST blueprints and the Socket.IO namespace."""

from __future__ import annotations

import logging
import posixpath
import sys
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, send_from_directory
from werkzeug.exceptions import HTTPException

from .config import Config, database_binds
from .errors import ChatError, from_unexpected
from .extensions import db, migrate, socketio

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")
# The browser client's files under WEB_ROOT that are served; everything else there is not.
PUBLIC_WEB_PATHS = ("js/", "vendor/", "style.css", "favicon")
log = logging.getLogger("chat")
# On every response (nginx passes them through). The page loads only its own files: scripts
# from /js and /vendor (no inline script, no eval), its stylesheet, and talks to its own origin
# over HTTP and WebSocket ('self' covers ws: and wss: of the same host in CSP Level 3).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Tokens never travel in URLs, but room names do: other sites learn only our origin.
    "Referrer-Policy": "strict-origin-when-cross-origin",
    # frame-ancestors for browsers that predate it: the page is never framed (clickjacking).
    "X-Frame-Options": "DENY",
}


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build a worker app from the environment, with `overrides` applied on top (tests)."""
    app = Flask(__name__, static_folder=None)
    app.config.from_mapping({k: v for k, v in vars(Config()).items() if k.isupper()})
    app.config.update(overrides or {})
    # The HTTP body limit matches Engine.IO's: no payload of ours needs more.
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_HTTP_BUFFER_SIZE"]
    _configure_logging(app)

    app.config.setdefault(
        "SQLALCHEMY_BINDS",
        database_binds(
            app.config["SQLALCHEMY_DATABASE_URI"], app.config["SQLALCHEMY_ENGINE_OPTIONS"]
        ),
    )
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        from . import green

        green.set_database_timeout(app.config["DATABASE_TIMEOUT_SECONDS"])
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR)
    _init_realtime(app)
    _register_http(app)
    app.wsgi_app = _refuse_websocket_compression(app.wsgi_app)
    from .transport.packet_filter import guard_engineio_http

    app.wsgi_app = guard_engineio_http(app.wsgi_app, app.config["MAX_HTTP_BUFFER_SIZE"])
    if app.config["TRUSTED_PROXY_HOPS"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # The client's address (login throttling) from the proxies' X-Forwarded-For.
        hops = app.config["TRUSTED_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)

    from .domain.rooms import forget_cached_rooms

    forget_cached_rooms()
    if app.config["AUTO_MIGRATE"]:
        from flask_migrate import upgrade

        with app.app_context():
            upgrade(directory=MIGRATIONS_DIR)
    return app


def _init_realtime(app: Flask) -> None:
    from . import metrics
    from .cluster.liveness import Liveness
    from .cluster.mq import ShardedRedisManager
    from .cluster.presence import Presence
    from .cluster.rate_limit import RateLimiter, rules_from_config
    from .cluster.shared_state import make_state
    from .realtime.namespace import ChatNamespace
    from .transport import origins, packet_filter, pings, socket_limits

    cfg = app.config
    state = make_state(cfg["REDIS_URL"])
    presence = Presence(state, cfg["NODE_ID"], cfg["PRESENCE_TTL_SECONDS"])
    limiter = RateLimiter(state, rules_from_config(cfg))
    manager = None
    if cfg["REDIS_URL"]:
        manager = ShardedRedisManager(
            cfg["REDIS_URL"],
            unsubscribe_delay=cfg["MQ_UNSUBSCRIBE_DELAY_SECONDS"],
            on_received=lambda kind: metrics.mq_received.labels(kind).inc(),
        )
        # A message's `room` notices (one per member) and typing are best effort: while
        # Redis hangs they do not each wait out the publish timeout (cluster/mq.py).
        manager.best_effort_events = frozenset({"room", "typing"})
    socketio.init_app(
        app,
        async_mode=cfg["ASYNC_MODE"],
        client_manager=manager,
        # A callable policy, which the gevent server asks too before a WebSocket upgrade.
        cors_allowed_origins=origins.engineio_setting(cfg["CORS_ALLOWED_ORIGINS"]),
        max_http_buffer_size=cfg["MAX_HTTP_BUFFER_SIZE"],
        ping_interval=cfg["PING_INTERVAL_SECONDS"],
        ping_timeout=cfg["PING_TIMEOUT_SECONDS"],
        # Flask's cookie session is not used by the socket handlers; skip its per-event copy.
        manage_session=False,
        # A connection's events are handled one after another, in the order received, by the
        # greenlet reading that connection (its WebSocket, or its polling POST): a person's
        # messages are stored in the order sent. Other connections have readers of their own
        # and never wait behind this one. By default python-socketio starts a task per event,
        # and a connection's events raced each other to the database.
        async_handlers=False,
        logger=_library_logger("socketio.server"),
        engineio_logger=_library_logger("engineio.server"),
    )
    packet_filter.harden(socketio.server)
    pings.install(socketio.server.eio)
    if cfg["SID_TAG"]:
        from .transport.sticky import tag_session_ids

        tag_session_ids(socketio.server.eio, cfg["SID_TAG"])
    socket_limits.install(cfg["MAX_SOCKET_QUEUE_BYTES"], cfg["AUTH_TIMEOUT_SECONDS"])
    namespace = ChatNamespace("/", presence, limiter)
    socketio.on_namespace(namespace)
    app.extensions["chat.namespace"] = namespace
    app.extensions["chat.presence"] = presence
    app.extensions["chat.rate_limiter"] = limiter
    app.extensions["chat.liveness"] = Liveness(socketio, presence, state, manager, app=app)
    from .realtime.sessions import SessionGuard

    app.extensions["chat.sessions"] = SessionGuard(app, socketio, namespace)


def _library_logger(name: str) -> logging.Logger:
    """python-socketio's or python-engineio's logger: errors only, printed by our handler.

    Given `logger=False` they attach a stderr handler of their own, so each of their errors
    appeared twice in a worker's log (once without the node's format).
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.ERROR)
    return logger


def _register_http(app: Flask) -> None:
    from .api import bp as api_bp
    from .api.openapi import openapi_document
    from .api.ops import ops

    app.register_blueprint(api_bp)
    app.register_blueprint(ops)
    app.add_url_rule("/api/openapi.json", "openapi", lambda: jsonify(openapi_document()))

    @app.errorhandler(ChatError)
    def chat_error(err: ChatError):
        if err.status >= 500:
            db.session.rollback()
        headers = {}
        if getattr(err, "retry_after", None):
            headers["Retry-After"] = str(err.retry_after)
        return err.to_dict(), err.status, headers

    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            err.code or 0, "invalid"
        )
        return {"error": {"code": code, "message": err.description}}, err.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        db.session.rollback()
        err = from_unexpected(exc)
        if err.code == "internal":
            log.exception("unhandled error")
        else:
            log.warning("request refused: %s (%s)", err.message, type(exc).__name__)
        return err.to_dict(), err.status

    web_root = Path(app.config["WEB_ROOT"])

    @app.get("/")
    def index():
        if not (web_root / "index.html").exists():
            return {"service": "chat", "node": app.config["NODE_ID"], "client": "not built"}
        return send_from_directory(web_root, "index.html")

    @app.get("/<path:filename>")
    def web_file(filename: str):
        # Only what the page loads is public: not the client's tests, package files or
        # node_modules, which live in the same folder.
        filename = posixpath.normpath(filename)
        if not filename.startswith(PUBLIC_WEB_PATHS):
            return {"error": {"code": "not_found", "message": "no such file"}}, 404
        return send_from_directory(web_root, filename)


def _refuse_websocket_compression(wsgi_app):
    """Drop the client's permessage-deflate offer before any WebSocket server sees it.

    Browsers always offer it and eventlet accepts it, and then every broadcast frame is
    compressed once per recipient with a zlib context per connection: at 1,000 members that
    put eventlet seconds behind (../shared/FANOUT-NOTES.md). Chat frames are small, so we
    send them uncompressed on every path; nginx drops the header too.
    """

    def app(environ, start_response):
        environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
        return wsgi_app(environ, start_response)

    return app


def _configure_logging(app: Flask) -> None:
    node = app.config["NODE_ID"]
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s [{node}] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(app.config["LOG_LEVEL"])
