"""Group a py-spy raw profile of a chat worker by what its stacks do (docs/BENCHMARKS.md, 3).

    py-spy record --nonblocking -r 100 -d 20 -p <worker pid> --format raw -o profile.raw.txt
    python -m chatload.pyspy_groups profile.raw.txt

The first matching group wins, in the order of `group`; the shares add up to 100 %. Frames
keep their whole file path: the database and Redis groups are told by it (`sqlalchemy/`,
`redis/`). Until 2026-11-26 the paths were cut to their file names first, which put the
stacks of SQLAlchemy, psycopg2 and redis-py that `group` did not name by function into
"handler: Flask-SocketIO/validation/other" (section 3's evening shares are from that version).
"""

from __future__ import annotations

import collections
import sys


def group(frames: list[str]) -> str:
    """The group of one stack (its frames as "function (path:line)", outermost first)."""
    s, leaf = ";".join(frames), frames[-1]
    if "_handle_event_internal" in s:
        if "Manager.emit" in s or "_publish" in s:
            return "handler: emit (local queue puts) + Redis publish"
        if "sqlalchemy/" in s or "psycopg2/" in s:
            return "handler: database (SQLAlchemy, psycopg2)"
        if "rate_limit" in s or "redis/" in s:
            return "handler: rate limit (Redis)"
        return "handler: Flask-SocketIO/validation/other"
    if "PubSubManager._thread" in s:
        return "listener: Redis message decode + local emit"
    if "writer" in s:
        if "getsockopt" in leaf:
            return "per recipient: getsockopt(SO_SNDBUF) in gevent sendall"
        if leaf.startswith("SocketMixin.send ("):
            return "per recipient: send() syscall"
        if "send_frame" in s or "WebSocketWSGI.send" in s:
            return "per recipient: frame building + sendall bookkeeping"
        if "poll" in s:
            return "per recipient: Engine.IO queue wait/wake (poll, gevent Timeout)"
        return "per recipient: writer loop other"
    if leaf.startswith("Hub.run"):
        return "gevent hub (loop, greenlet switches)"
    if "_websocket_handler" in s:
        return "reading client frames (Engine.IO read loop)"
    return "other"


def main(path: str) -> None:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        line = line.rstrip()
        if not line:
            continue
        stack, n = line.rsplit(" ", 1)
        total += int(n)
        counts[group(stack.split(";"))] += int(n)
    print("samples", total)
    for name, n in counts.most_common():
        print(f"{100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
