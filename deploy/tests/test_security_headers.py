"""Every response carries the security headers, from a worker and through nginx.

Real processes: the launcher's cluster (nginx in front of real workers, private Redis). The
page, a script it loads, an API answer and a 404 are fetched from nginx and from a worker
directly; the Content-Security-Policy allows the page's own files and nothing inline.
"""

from __future__ import annotations

import re

import pytest
import requests

pytestmark = pytest.mark.e2e

EXPECTED = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}
# Each path and its status: the headers go on answers and refusals alike.
PATHS = {
    "/": 200,
    "/js/main.js": 200,
    "/style.css": 200,
    "/api/openapi.json": 200,
    "/healthz": 200,
    "/no/such/file": 404,
}


@pytest.mark.parametrize("via", ["nginx", "worker"])
def test_every_response_carries_the_security_headers(shared_cluster, via):
    base = shared_cluster.url if via == "nginx" else shared_cluster.workers[0].url
    for path, status in PATHS.items():
        r = requests.get(base + path, timeout=10)
        assert r.status_code == status, (path, r.status_code)
        for name, value in EXPECTED.items():
            # Exactly once: nginx passes the worker's header on and adds no second copy.
            assert r.raw.headers.getlist(name) == [value], (via, path, name)


def test_the_page_needs_nothing_the_policy_forbids(shared_cluster):
    """No inline script, no inline style, no foreign origin in the page."""
    page = requests.get(shared_cluster.url + "/", timeout=10).text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, flags=re.S)
    assert scripts, "the page loads its scripts"
    for attributes, body in scripts:
        assert body.strip() == "" and re.search(r'\bsrc="/', attributes), attributes
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", page, flags=re.I)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
