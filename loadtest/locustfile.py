"""Chat fan-out load test: `locust -f loadtest/locustfile.py` (see loadtest/README.md).

The users, the scenario options and the phases live in the chatload package beside this file.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from locust import events  # noqa: E402

from chatload import coordinator, scenario  # noqa: E402
from chatload.user import ChatUser  # noqa: E402, F401  (locust finds User classes here)


@events.init_command_line_parser.add_listener
def _add_arguments(parser, **_kwargs):
    scenario.add_arguments(parser)


@events.init.add_listener
def _install(environment, **_kwargs):
    coordinator.install(environment)
