"""ACCESS_LOG: the HTTP server's line per request is in a worker's log when on, absent when off."""

from __future__ import annotations

import pytest
import requests

from testkit.processes import ASYNC_MODES

pytestmark = pytest.mark.parametrize("async_mode", ASYNC_MODES, indirect=True, scope="module")

# A path no other request of the test asks for, so its line is told from the readiness checks.
PROBE = "/api/openapi.json?access-log-probe"


@pytest.mark.parametrize(("value", "lines"), [("0", 0), ("1", 1)])
def test_a_request_is_logged_only_when_access_log_is_on(start_worker, value, lines):
    worker = start_worker(ACCESS_LOG=value)
    assert requests.get(worker.url + PROBE, timeout=10).status_code == 200
    # Written after the response: a second request on a new connection orders it.
    assert requests.get(worker.url + "/healthz", timeout=10).status_code == 200
    worker.stop()
    assert worker.log_text().count("access-log-probe") == lines
