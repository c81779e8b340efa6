"""A worker refuses to start with a SECRET_KEY short enough to guess from one token."""

from __future__ import annotations

import pytest

from chat.config import MIN_SECRET_KEY_LENGTH
from testkit.processes import ChatWorker

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("length", [1, MIN_SECRET_KEY_LENGTH - 1])
def test_a_short_secret_key_stops_the_worker_with_a_clear_message(tmp_path, length):
    worker = ChatWorker(tmp_path, env={"SECRET_KEY": "k" * length}, wait=False)
    try:
        assert worker.proc.wait(timeout=60) == 1
        log = worker.log_text()
        assert f"SECRET_KEY is {length} characters; at least 32 are required" in log
        assert "Traceback" not in log
    finally:
        worker.stop()


def test_a_long_enough_secret_key_is_accepted(tmp_path):
    worker = ChatWorker(tmp_path, env={"SECRET_KEY": "k" * MIN_SECRET_KEY_LENGTH})
    worker.stop()
