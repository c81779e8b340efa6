"""Per-user message rate limit, counted in shared state so every worker enforces the same one."""

from __future__ import annotations

from ..errors import RateLimited
from .shared_state import SharedState


class RateLimiter:
    def __init__(self, state: SharedState, limit: int, window: int) -> None:
        self.state, self.limit, self.window = state, limit, window

    def check(self, username: str) -> None:
        """Count one message; RateLimited past the limit for the current window."""
        if self.state.hit(f"chat:rate:{username}", self.window) > self.limit:
            raise RateLimited(f"more than {self.limit} messages in {self.window} s; slow down")
