"""Run one chat worker: `python -m chat` (what `make run` and the cluster launcher start)."""

from chat import green

mode = green.patch()  # before anything else imports socket, ssl, threading or psycopg2

import logging  # noqa: E402
import signal  # noqa: E402
from types import FrameType  # noqa: E402

from chat import create_app, garbage  # noqa: E402
from chat.extensions import socketio  # noqa: E402
from chat.transport import http_server  # noqa: E402
from chat.transport.drain import Drain  # noqa: E402

log = logging.getLogger("chat")


def main() -> None:
    app = create_app()
    cfg = app.config
    liveness = app.extensions["chat.liveness"]
    liveness.start()
    app.extensions["chat.sessions"].start()
    drain = Drain(
        socketio,
        on_exit=liveness.stop,
        seconds=cfg["DRAIN_SECONDS"],
        events=app.extensions["chat.namespace"],
    )
    # Flask's documented way to add WSGI middleware (see app.py).
    app.wsgi_app = drain.wsgi_middleware(app.wsgi_app)  # type: ignore[method-assign,assignment]

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if mode == "threading":  # the development server cannot drain: stop at once
            log.info("SIGTERM: stopping worker %s", cfg["NODE_ID"])
            liveness.stop()
            raise SystemExit(0)
        drain.begin()

    signal.signal(signal.SIGTERM, on_sigterm)
    frozen = garbage.freeze_startup_objects()  # start-up is done
    log.info("start-up objects frozen out of garbage collection: %d", frozen)
    log.info(
        "chat worker %s listening on http://%s:%s (async_mode=%s, database=%s, redis=%s)",
        cfg["NODE_ID"],
        cfg["HOST"],
        cfg["PORT"],
        mode,
        cfg["SQLALCHEMY_DATABASE_URI"].split("://", 1)[0],
        "yes" if cfg["REDIS_URL"] else "no",
    )
    http_server.serve(app, socketio, mode, drain, access_log=cfg["ACCESS_LOG"])


if __name__ == "__main__":
    main()
