"""The chat load-test suite for locust: users, scenario options, run phases, report."""
