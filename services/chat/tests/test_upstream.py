"""The version guard (chat/transport/upstream.py): a worker refuses an untested library."""

from __future__ import annotations

import pytest

from chat.transport import upstream


@pytest.mark.parametrize("package", sorted(upstream.TESTED))
def test_upstream_installed_versions_are_inside_the_guarded_ranges(package):
    upstream.require(package, "this test")  # does not raise


@pytest.mark.parametrize(
    ("package", "installed", "refused"),
    [
        ("python-engineio", "4.15.1", False),
        ("python-engineio", "4.99.0", False),
        ("python-engineio", "4.14.9", True),
        ("python-engineio", "5.0.0", True),
        ("gevent-websocket", "0.10.1", False),
        ("gevent-websocket", "0.11.0", True),
        ("eventlet", "0.41.3", False),
        ("eventlet", "0.42.0", True),
        ("gevent", "26.9.0", False),
        ("gevent", "27.1", True),
        ("python-socketio", "5.18.1rc1", False),
        ("python-socketio", "6.0", True),
    ],
)
def test_require_refuses_exactly_outside_the_range(monkeypatch, package, installed, refused):
    monkeypatch.setattr(upstream, "version", lambda name: installed)
    if refused:
        with pytest.raises(upstream.UntestedUpstream) as exc:
            upstream.require(package, "the reach")
        assert str(exc.value).startswith(f"the reach relies on {package} internals tested on ")
        assert f"{installed} is installed" in str(exc.value)
    else:
        upstream.require(package, "the reach")


def test_an_install_refuses_an_untested_engineio(monkeypatch):
    from chat.transport import socket_limits

    monkeypatch.setattr(upstream, "version", lambda name: "5.0.0")
    with pytest.raises(upstream.UntestedUpstream, match="engineio.socket.Socket"):
        socket_limits.install(1 << 20, 5.0)
