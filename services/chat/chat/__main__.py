"""Run one chat worker: `python -m chat` (what `make run` and the cluster launcher start)."""

from chat import green

mode = green.patch()  # before anything else imports socket, ssl, threading or psycopg2

import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402

from chat import create_app  # noqa: E402
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
    app.wsgi_app = drain.wsgi_middleware(app.wsgi_app)

    def on_sigterm(signum, frame):
        if mode == "threading":  # the development server cannot drain: stop at once
            log.info("SIGTERM: stopping worker %s", cfg["NODE_ID"])
            liveness.stop()
            raise SystemExit(0)
        drain.begin()

    signal.signal(signal.SIGTERM, on_sigterm)
    log.info(
        "chat worker %s listening on http://%s:%s (async_mode=%s, database=%s, redis=%s)",
        cfg["NODE_ID"],
        cfg["HOST"],
        cfg["PORT"],
        mode,
        cfg["SQLALCHEMY_DATABASE_URI"].split("://", 1)[0],
        "yes" if cfg["REDIS_URL"] else "no",
    )
    access_log = os.environ.get("ACCESS_LOG", "0") == "1"
    http_server.serve(app, socketio, mode, drain, access_log=access_log)


if __name__ == "__main__":
    main()
