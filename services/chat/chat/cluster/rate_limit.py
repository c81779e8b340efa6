"""Per-user message rate limit, counted in shared state so every worker enforces the same one."""

from __future__ import annotations

import logging

from ..errors import RateLimited
from .shared_state import SharedState, StateUnavailable

log = logging.getLogger(__name__)


class RateLimiter:
    def __init__(self, state: SharedState, limit: int, window: int) -> None:
        self.state, self.limit, self.window = state, limit, window

    def check(self, username: str) -> None:
        """Count one message; RateLimited past the limit for the current window.

        Fails open: while the shared state is unreachable nobody is limited. Refusing every
        message during a Redis outage would turn a cache failure into a chat outage; a flood
        is then bounded by the outage (and the database still stores every message).
        """
        try:
            count = self.state.hit(f"chat:rate:{username}", self.window)
        except StateUnavailable as exc:
            log.warning("rate limit not enforced: %s", exc)
            return
        if count > self.limit:
            raise RateLimited(f"more than {self.limit} messages in {self.window} s; slow down")
