"""State shared by all workers (presence, connection counts, rate limits) and liveness checks."""
