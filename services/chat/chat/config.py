"""Configuration from the environment: the one place settings are read.

Imported before green.patch() monkey-patches the standard library (the entry point reads
ASYNC_MODE through it), so at module level it imports nothing that opens or selects on
sockets: `socket` and `secrets` are imported where they are used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(SystemExit):
    """A setting the worker refuses to run with; the message says which and why."""


def _env_int(
    name: str, default: int, minimum: int, maximum: int | None = None, what: str = ""
) -> int:
    """An integer setting in [minimum, maximum]; ConfigError naming the variable otherwise
    (saying `what` is expected when given, else the range).

    Every setting has a minimum: a negative size or a zero interval started a worker that
    then misbehaved (refused every frame, pinged in a busy loop) far from the cause.
    """
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: an integer is expected") from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ConfigError(f"{name}={number}: {what or 'an integer ' + bound} is expected")
    return number


# The names logging.Logger.setLevel accepts (app.py sets the root logger's level to it):
# anything else raised ValueError from deep in create_app, naming no variable.
LOG_LEVELS = ("CRITICAL", "FATAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG", "NOTSET")


# The green-thread libraries a worker can run on (green.py); threading is for tests and tools.
SUPPORTED_MODES = ("gevent", "eventlet", "threading")


def async_mode() -> str:
    """ASYNC_MODE (default gevent): read by green.patch() before anything else is imported,
    and by Config. ConfigError when it names no supported mode."""
    mode = os.environ.get("ASYNC_MODE") or "gevent"
    if mode not in SUPPORTED_MODES:
        raise ConfigError(f"ASYNC_MODE must be one of {', '.join(SUPPORTED_MODES)}, not {mode!r}")
    return mode


# Anything else is refused: a typo (AUTO_MIGRATE=ture) read as "off" started a worker on an
# unmigrated database that answered every write 503 while /healthz said ok.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _env_bool(name: str, default: bool) -> bool:
    """A switch; ConfigError naming the variable when its value is not one of the words."""
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    word = value.strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise ConfigError(
            f"{name}={value!r}: one of {', '.join(TRUE_WORDS + FALSE_WORDS)} is expected"
        )
    return word in TRUE_WORDS


# Safe in a URL query, an nginx map regex and an upstream name, and free of the "." that
# separates it from Engine.IO's own id (transport/sticky.py).
SID_TAG_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _sid_tag() -> str | None:
    tag = os.environ.get("SID_TAG") or None
    if tag is not None and not SID_TAG_PATTERN.fullmatch(tag):
        raise ConfigError(f"SID_TAG={tag!r}: 1-32 of A-Z a-z 0-9 _ - expected")
    return tag


def _data_dir() -> Path:
    path = Path(os.environ.get("CHAT_DATA_DIR", "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


# PostgreSQL's statement_timeout is a 32-bit count of milliseconds: a longer timeout is
# refused by the server on every new connection, not at start-up.
MAX_DATABASE_TIMEOUT_SECONDS = (2**31 - 1) // 1000


# Tokens are HMAC-signed with SECRET_KEY: a short key can be guessed offline from one token.
# 32 characters of a random key are far beyond any search; the generated key has 64.
MIN_SECRET_KEY_LENGTH = 32


def _secret_key(data_dir: Path) -> str:
    """SECRET_KEY from the environment, else one kept in the data dir so restarts keep tokens."""
    if os.environ.get("SECRET_KEY"):
        key = os.environ["SECRET_KEY"]
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(
                f"SECRET_KEY is {len(key)} characters; at least {MIN_SECRET_KEY_LENGTH} are "
                "required (for example: python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        return key
    import secrets

    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


# SQLite, or PostgreSQL through psycopg2 (normalize_database_url pins the bare schemes to it).
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg2")
# What cluster/shared_state.redis_client and cluster/topology.py open: one Redis (redis-py's
# from_url: redis, rediss for TLS, unix for a socket path), one through Sentinels, a Cluster.
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    """`value` if it is `scheme://...` with a scheme of `schemes`; else ConfigError naming
    `name` (the libraries' own errors, deep in start-up, named no variable)."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in schemes or not rest:
        raise ConfigError(
            f"{name}={value!r}: a URL starting with one of "
            f"{', '.join(s + '://' for s in schemes)} is expected"
        )
    return value


def _database_url(data_dir: Path) -> str:
    given = os.environ.get("DATABASE_URL")
    if given:
        _url("DATABASE_URL", given, DATABASE_SCHEMES)
    return normalize_database_url(given or f"sqlite:///{data_dir / 'chat.db'}")


def _redis_url() -> str | None:
    given = os.environ.get("REDIS_URL") or None
    return None if given is None else _url("REDIS_URL", given, REDIS_SCHEMES)


def normalize_database_url(url: str) -> str:
    """Pin PostgreSQL URLs to psycopg2, the driver psycogreen makes cooperative; make a
    relative SQLite path absolute, against the working directory.

    SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which would block the green hub;
    Heroku-style postgres:// is no longer accepted at all. Flask-SQLAlchemy would put a
    relative SQLite file under the app's instance folder inside the installed package, not
    where the person who wrote `sqlite:///var/chat.db` looks for it.
    """
    for bare in ("postgres://", "postgresql://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare) :]
    sqlite = "sqlite:///"
    path = url[len(sqlite) :]
    if url.startswith(sqlite) and path and not path.startswith(("/", ":memory:")):
        return sqlite + str(Path(path).resolve())
    return url


class Config:
    """Settings for one chat worker, read from the environment when instantiated.

    `overrides` (tests, tools) replace settings after they are read. A SECRET_KEY given there
    is used as it is: no key is read from or written to the data dir for it.
    Raises ConfigError for a value the worker refuses (naming the variable). Numbers have
    a minimum: sizes, intervals, timeouts and limits at least 1 (a limit of 0 would refuse
    everything); 0 only where it means "none" or "at once" (TRUSTED_PROXY_HOPS, DRAIN_SECONDS,
    MQ_UNSUBSCRIBE_DELAY_SECONDS).
    """

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        import socket

        given = dict(overrides or {})
        data_dir = _data_dir()
        self.DATA_DIR = str(data_dir)
        self.SECRET_KEY = given["SECRET_KEY"] if "SECRET_KEY" in given else _secret_key(data_dir)
        self.SQLALCHEMY_DATABASE_URI = _database_url(data_dir)
        self.REDIS_URL = _redis_url()
        self.ASYNC_MODE = async_mode()
        self.HOST = os.environ.get("HOST", "127.0.0.1")
        # Checked here: else an OverflowError traceback from bind().
        self.PORT = _env_int("PORT", 5000, 0, 65535, what="a TCP port (0-65535)")
        self.NODE_ID = os.environ.get("NODE_ID") or f"{socket.gethostname()}:{self.PORT}"
        self.AUTO_MIGRATE = _env_bool("AUTO_MIGRATE", True)
        # Put at the front of every Engine.IO session id this worker issues, so nginx routes
        # a request carrying the sid here without a cookie (transport/sticky.py). One per worker.
        self.SID_TAG = _sid_tag()
        # A day: long enough for a working session, short enough that a leaked token dies.
        self.TOKEN_TTL_SECONDS = _env_int("TOKEN_TTL_SECONDS", 86_400, 1)
        # "same-origin" keeps Engine.IO's default (Origin must match Host); "*" allows all.
        origins = os.environ.get("CORS_ALLOWED_ORIGINS", "same-origin")
        self.CORS_ALLOWED_ORIGINS = (
            None if origins == "same-origin" else "*" if origins == "*" else origins.split(",")
        )
        # 4,000 characters of UTF-8 is at most 16 KB; 64 KB leaves room for JSON and batching.
        self.MAX_HTTP_BUFFER_SIZE = _env_int("MAX_HTTP_BUFFER_SIZE", 64 * 1024, 1)
        # A person types at most a few messages a second; 30 per 10 s stops floods, not chat.
        self.RATE_LIMIT_MESSAGES = _env_int("RATE_LIMIT_MESSAGES", 30, 1)
        self.RATE_LIMIT_WINDOW_SECONDS = _env_int("RATE_LIMIT_WINDOW_SECONDS", 10, 1)
        # The other limits (windows in cluster/rate_limit.py). A person logs in a few times a
        # day and mistypes a password now and then; a guesser needs thousands of tries.
        self.RATE_LIMIT_LOGIN_FAILURES = _env_int("RATE_LIMIT_LOGIN_FAILURES", 10, 1)
        # Per client address: an office behind one NAT address holds many mistyping people.
        self.RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS = _env_int(
            "RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS", 50, 1
        )
        # Per client address and hour; a load test that registers thousands raises it.
        self.RATE_LIMIT_REGISTRATIONS = _env_int("RATE_LIMIT_REGISTRATIONS", 20, 1)
        # Per user and minute: a client rejoining its rooms after reconnects, not a sprayer.
        self.RATE_LIMIT_JOINS = _env_int("RATE_LIMIT_JOINS", 120, 1)
        # Per user and hour, rooms and direct conversations together: each one is listed for
        # every user (GET /api/rooms) and kept forever.
        self.RATE_LIMIT_ROOM_CREATIONS = _env_int("RATE_LIMIT_ROOM_CREATIONS", 20, 1)
        # Per user and minute: read markers follow what a person scrolls past.
        self.RATE_LIMIT_READS = _env_int("RATE_LIMIT_READS", 120, 1)
        # At most one `typing` broadcast per user and room this often; clients show it a few
        # seconds, so more often adds nothing a reader sees.
        self.TYPING_INTERVAL_SECONDS = _env_int("TYPING_INTERVAL_SECONDS", 2, 1)
        # How often each worker checks its sockets' tokens (revoked, expired): the bound on how
        # long an ended session's open socket keeps working.
        self.SESSION_CHECK_SECONDS = _env_int("SESSION_CHECK_SECONDS", 2, 1)
        # Proxies in front that append the client's address to X-Forwarded-For (nginx: 1).
        # 0 trusts no header: the address is the peer's, which a client cannot forge.
        self.TRUSTED_PROXY_HOPS = _env_int("TRUSTED_PROXY_HOPS", 0, 0)
        # PostgreSQL: how long a statement, a connection attempt or a wait for a pooled
        # connection may take before the call fails as `unavailable`. A chat query takes
        # milliseconds; a frozen server must not hold requests (and /healthz) for minutes.
        self.DATABASE_TIMEOUT_SECONDS = _env_int(
            "DATABASE_TIMEOUT_SECONDS", 3, 1, MAX_DATABASE_TIMEOUT_SECONDS
        )
        # Presence entries live this long without a heartbeat: the bound on a dead worker's ghosts.
        self.PRESENCE_TTL_SECONDS = _env_int("PRESENCE_TTL_SECONDS", 15, 1)
        # A worker keeps a room's message-queue channel this long after the room's last local
        # socket left, so a room that empties and refills (a reconnect, a page reload) costs
        # no SSUBSCRIBE/SUNSUBSCRIBE churn (cluster/mq.py).
        self.MQ_UNSUBSCRIBE_DELAY_SECONDS = _env_int("MQ_UNSUBSCRIBE_DELAY_SECONDS", 30, 0)
        # Enough sockets for a person's browser tabs and phone; not enough to exhaust a worker.
        self.MAX_CONNECTIONS_PER_USER = _env_int("MAX_CONNECTIONS_PER_USER", 20, 1)
        # SIGTERM drains: clients are sent elsewhere at once, then handlers in flight get this
        # long to finish. Storing a message takes milliseconds; 10 s is far inside the 30 s a
        # process manager usually waits before SIGKILL.
        self.DRAIN_SECONDS = _env_int("DRAIN_SECONDS", 10, 0)
        # gevent: a message frame is written in the emitting greenlet when the socket's writer
        # is idle and the kernel takes it, skipping Engine.IO's per-socket queue (transport/
        # direct_write.py). Off: every frame goes through the queue and writer, as in Engine.IO.
        self.DIRECT_WEBSOCKET_WRITES = _env_bool("DIRECT_WEBSOCKET_WRITES", True)
        # Bytes queued for one socket and not yet written to the kernel: a member who stops
        # reading is cut off past it (and catches up with `since` when it reconnects). 1 MiB
        # is over 20 of the largest messages (47 KB on the wire) on top of the kernel's own
        # buffers; a client that reads keeps its queue near empty.
        self.MAX_SOCKET_QUEUE_BYTES = _env_int("MAX_SOCKET_QUEUE_BYTES", 1 << 20, 1)
        # A session must complete a Socket.IO CONNECT (with a valid token) this soon after it
        # opened: clients do it in their first round trip; idle sessions only hold descriptors.
        self.AUTH_TIMEOUT_SECONDS = _env_int("AUTH_TIMEOUT_SECONDS", 5, 1)
        # An HTTP request's line and headers must arrive within this (slowloris). Browsers and
        # nginx send them in one packet; 10 s is room for a slow mobile link.
        self.HEADER_TIMEOUT_SECONDS = _env_int("HEADER_TIMEOUT_SECONDS", 10, 1)
        # Engine.IO's heartbeat (python-engineio's defaults): a client that answers no PING for
        # PING_INTERVAL + PING_TIMEOUT seconds is gone. nginx's proxy timeouts exceed the sum.
        self.PING_INTERVAL_SECONDS = _env_int("PING_INTERVAL_SECONDS", 25, 1)
        self.PING_TIMEOUT_SECONDS = _env_int("PING_TIMEOUT_SECONDS", 20, 1)
        self.WEB_ROOT = os.environ.get("WEB_ROOT") or str(
            Path(__file__).resolve().parents[2] / "web"
        )
        self.LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
        if self.LOG_LEVEL not in LOG_LEVELS:
            raise ConfigError(
                f"LOG_LEVEL={self.LOG_LEVEL!r}: one of {', '.join(LOG_LEVELS)} expected"
            )
        # The HTTP server's own access log, one line per request (transport/http_server.py);
        # off by default: nginx in front keeps one.
        self.ACCESS_LOG = _env_bool("ACCESS_LOG", False)
        self.SQLALCHEMY_ENGINE_OPTIONS = _engine_options(
            self.SQLALCHEMY_DATABASE_URI, self.DATABASE_TIMEOUT_SECONDS
        )
        for name, value in given.items():
            setattr(self, name, value)


# The bind of the message hot path: one autocommitted statement stores a message (see
# domain.messages). A pool of its own, because switching a pooled connection in and out of
# autocommit costs a `SET default_transaction_isolation` round trip on its return.
AUTOCOMMIT_BIND = "autocommit"


def database_binds(url: str, engine_options: dict) -> dict:
    """SQLALCHEMY_BINDS for a database URL: the autocommit bind on PostgreSQL, none elsewhere."""
    if not url.startswith("postgresql"):
        return {}
    return {AUTOCOMMIT_BIND: {**engine_options, "url": url, "isolation_level": "AUTOCOMMIT"}}


def _engine_options(url: str, timeout: int = 3) -> dict:
    if url.startswith("sqlite"):
        # Several workers may share one SQLite file: wait for the write lock instead of failing.
        return {"connect_args": {"timeout": 15, "check_same_thread": False}}
    # No pool_pre_ping: it costs every request one more round trip (SELECT 1) to guard against
    # a connection the server dropped. Without it the first request on such a connection fails
    # as `unavailable` (a retry succeeds), and SQLAlchemy, seeing a disconnect, discards every
    # connection pooled before it, so a database restart costs each worker about one request.
    return {
        "pool_size": 10,
        "max_overflow": 20,
        # A request waits this long for a pooled connection, then is `unavailable`.
        "pool_timeout": timeout,
        "connect_args": {
            "connect_timeout": timeout,
            # The server ends a statement running longer (a lock wait, a runaway query).
            "options": f"-c statement_timeout={timeout * 1000}",
            # The kernel notices a peer that vanished (host down, network cut) within about
            # idle + interval * count seconds, instead of the default two hours.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
        },
    }
