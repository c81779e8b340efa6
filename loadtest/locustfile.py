"""Chat fan-out load test: `locust -f loadtest/locustfile.py` (see loadtest/README.md).

The users, the scenario options and the phases live in the chatload package (loadtest/chatload,
installed into the venv by `make deps`).
"""

from locust import events

from chatload import coordinator, scenario
from chatload.user import ChatUser  # noqa: F401  (locust finds User classes here)


@events.init_command_line_parser.add_listener
def _add_arguments(parser, **_kwargs):
    scenario.add_arguments(parser)


@events.init.add_listener
def _install(environment, **_kwargs):
    coordinator.install(environment)
