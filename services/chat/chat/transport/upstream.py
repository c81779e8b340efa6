"""The library versions this package's reaches into internals were tested on, and the check.

Every install function that reaches into a library's internals calls `require` first, so a
worker refuses to start on a version outside the tested range instead of failing quietly.
The range is a major series (a minor series for 0.x libraries) from the version the
`test_upstream_*` canaries last passed on; those canaries (tests/test_socket_limits.py
pins the exact versions) say what to re-check when the lock moves.
"""

from __future__ import annotations

from importlib.metadata import version

# package -> (lowest tested (major, minor), first (major, minor) not tested)
TESTED: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "python-engineio": ((4, 15), (5, 0)),
    "python-socketio": ((5, 18), (6, 0)),
    "gevent": ((26, 0), (27, 0)),
    "gevent-websocket": ((0, 10), (0, 11)),
    "eventlet": ((0, 41), (0, 42)),
    "limits": ((5, 0), (6, 0)),  # cluster/rate_limit.py's EdgeInclusiveMemoryStorage
}


class UntestedUpstream(RuntimeError):
    """An installed library is outside the version range a reach into it was tested on."""


def major_minor(text: str) -> tuple[int, int]:
    """(major, minor) of a version string such as "4.15.1" or "26.9.0"; minor 0 if absent."""
    parts = text.split(".")
    digits = ["".join(ch for ch in part if ch.isdigit()) or "0" for part in parts[:2]]
    return int(digits[0]), int(digits[1]) if len(digits) > 1 else 0


def require(package: str, reach: str) -> None:
    """Raise UntestedUpstream unless `package` is installed in its tested range.

    `reach`: what relies on it, for the message (e.g. "socket_limits replaces
    engineio.socket.Socket").
    """
    low, high = TESTED[package]
    installed = version(package)
    if not low <= major_minor(installed) < high:
        raise UntestedUpstream(
            f"{reach} relies on {package} internals tested on "
            f"{low[0]}.{low[1]} up to (not including) {high[0]}.{high[1]}; {installed} is "
            "installed: run the test_upstream_* canaries (services/chat/tests), then update "
            "chat/transport/upstream.py"
        )


def engineio_socket_class() -> type:
    """python-engineio's own `Socket` class, whatever `engineio.socket.Socket` names now.

    socket_limits, direct_write and lazy_writer install their subclass under that name (the
    reach above); canaries and copies must look at upstream's class, not at ours.
    """
    import engineio.socket

    for cls in engineio.socket.Socket.__mro__:
        if cls.__module__ == "engineio.socket" and cls.__name__ == "Socket":
            return cls
    raise RuntimeError("engineio.socket.Socket is no subclass of python-engineio's Socket")
