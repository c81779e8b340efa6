"""Which page origins may open an Engine.IO session: one policy, asked by Engine.IO and by the
gevent server before it upgrades a connection to a WebSocket.

CORS_ALLOWED_ORIGINS is "same-origin" (None here: the Origin must be the request's own
scheme and Host, or the ones X-Forwarded-Proto/-Host name), "*", or a list. python-engineio
takes a callable `cors_allowed_origins(origin, environ) -> bool` (its documented hook);
`OriginPolicy` is that callable, and `refuses_upgrade` asks the same object, so the two
checks cannot disagree. The same-origin rule is python-engineio 4.15's own
(BaseServer._cors_allowed_origins), copied; test_upstream_engineio_same_origin_rule_* in
tests/test_origins.py compares the two.
"""

from __future__ import annotations

from typing import Any


class OriginPolicy:
    """`policy(origin, environ)`: may a page from `origin` use this server? (Engine.IO's hook)."""

    def __init__(self, allowed: list[str] | str | None) -> None:
        """`allowed`: None for same-origin, else the accepted origins (exact strings)."""
        self.allowed: list[str] | None = [allowed] if isinstance(allowed, str) else allowed

    def __call__(self, origin: str | None, environ: dict[str, Any]) -> bool:
        if not origin:
            return False
        if self.allowed is not None:
            return origin in self.allowed
        return origin in same_origins(environ)


def same_origins(environ: dict[str, Any]) -> list[str]:
    """The origins of the request itself: its scheme and Host, and the forwarded ones."""
    if "wsgi.url_scheme" not in environ or "HTTP_HOST" not in environ:
        return []
    scheme, host = environ["wsgi.url_scheme"], environ["HTTP_HOST"]
    origins = [f"{scheme}://{host}"]
    if "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ:
        forwarded_scheme = environ.get("HTTP_X_FORWARDED_PROTO", scheme).split(",")[0].strip()
        forwarded_host = environ.get("HTTP_X_FORWARDED_HOST", host).split(",")[0].strip()
        origins.append(f"{forwarded_scheme}://{forwarded_host}")
    return origins


def engineio_setting(configured: list[str] | str | None) -> Any:
    """What to pass as `cors_allowed_origins`: "*" and [] (no check) as they are, else a policy."""
    every_origin = configured == "*" or (isinstance(configured, list) and "*" in configured)
    if every_origin or configured == []:
        return configured
    return OriginPolicy(configured)


def refuses_upgrade(setting: Any, environ: dict[str, Any]) -> bool:
    """True if Engine.IO, configured with `setting` (engineio_setting's), would refuse this
    request's Origin: a WebSocket upgrade it would refuse is served as plain HTTP instead."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin or not isinstance(setting, OriginPolicy):
        return False  # no Origin (not a browser), or every origin is accepted
    return not setting(origin, environ)
