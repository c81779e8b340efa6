"""A clock tests move by hand, standing in for the `time` module where code reads the time."""

from __future__ import annotations


class FakeClock:
    """`time()` and `monotonic()` both read `now` (seconds), which the test sets or advances.

    Install it with `monkeypatch.setattr(module, "time", clock)` in each module that reads
    the time (the shared state, the rate limiter, `limits`' storages).
    """

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now
