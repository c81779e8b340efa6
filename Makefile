# Chat platform: `make run` starts one worker on an embedded default; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 5000
HOST ?= 127.0.0.1
LOCK := services/chat/requirements-dev.lock
# Test processes (pytest-xdist): most tests wait on real processes and sockets, so two share
# the 2-core machine well; a test file runs whole in one process (module fixtures, order).
# PYTEST_WORKERS=0 runs everything in this process, one test at a time.
PYTEST_WORKERS ?= 2
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck migrate deps system-deps clean

# Each part of the project adds its own targets, and what `make test` needs first, here.
TEST_PREREQS :=
-include deploy/cluster.mk deploy/faults.mk services/web/web.mk loadtest/loadtest.mk

# The project's own packages, installed editable without their dependencies (the lock has
# them all): the chat worker, testkit (the process library, the cluster launcher, the test
# clients) and chatload (the load test).
PROJECT_PACKAGES := services/chat services/testkit loadtest

$(STAMP): $(LOCK) $(addsuffix /pyproject.toml,$(PROJECT_PACKAGES))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(addprefix -e ,$(PROJECT_PACKAGES))
	touch $@

deps: $(STAMP)

run: deps
	cd . && HOST=$(HOST) PORT=$(PORT) $(PY) -m chat

migrate: deps
	FLASK_APP=chat AUTO_MIGRATE=0 ASYNC_MODE=threading $(VENV)/bin/flask db upgrade -d services/chat/chat/migrations

# Installs what the tests need from Debian when missing and we are root; otherwise names it.
system-deps:
	@bash deploy/scripts/ensure-system-deps.sh

# The lint (ruff + mypy) runs first: a type error fails CI as a test would.
test: deps system-deps $(TEST_PREREQS) lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: deps typecheck
	$(VENV)/bin/ruff check services loadtest deploy
	$(VENV)/bin/ruff format --check services loadtest deploy

# mypy over the chat package; its settings are [tool.mypy] in services/chat/pyproject.toml.
typecheck: deps
	$(VENV)/bin/mypy --config-file services/chat/pyproject.toml services/chat/chat

clean:
	rm -rf $(VENV) var
