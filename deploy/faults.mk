# Fault injection and abuse (issue 6). The fault and abuse tests run in `make test`; these
# targets run them alone, and run the soak, which `make test` never does.
#   make faults                   deploy/tests/test_faults_*.py + services/chat/tests/test_abuse_*.py
#   make soak                     bounded soak through nginx (deploy/soak.py), 10 minutes
# Soak settings: SOAK_SECONDS (600), SOAK_CLIENTS (300), SOAK_ROOMS (10), SOAK_RATE (20
# messages/s in all), SOAK_WORKERS (3), SOAK_SAMPLE_SECONDS (30); DATABASE_URL (default: one
# SQLite file in WAL mode). Results: run/soak/<timestamp>/result.json.
SOAK_SECONDS ?= 600
SOAK_CLIENTS ?= 300
SOAK_ROOMS ?= 10
SOAK_RATE ?= 20
SOAK_WORKERS ?= 3
SOAK_SAMPLE_SECONDS ?= 30

.PHONY: faults soak

faults: deps system-deps
	$(PY) -m pytest deploy/tests/test_faults_*.py services/chat/tests/test_abuse_*.py $(PYTEST_ARGS)

soak: deps system-deps
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_CLIENTS=$(SOAK_CLIENTS) SOAK_ROOMS=$(SOAK_ROOMS) \
	SOAK_RATE=$(SOAK_RATE) SOAK_WORKERS=$(SOAK_WORKERS) SOAK_SAMPLE_SECONDS=$(SOAK_SAMPLE_SECONDS) \
	$(PY) deploy/soak.py
