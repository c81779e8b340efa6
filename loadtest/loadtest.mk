# Load test (locust): included by the root Makefile. Parameters and targets: loadtest/README.md.
#   make loadtest                      default headless scenario against TARGET, table + CSV/HTML/PNG
#   make loadtest-ui                   locust's web UI on http://$(UI_HOST):$(UI_PORT)
#   make loadtest-dist WORKERS=4       one locust master, WORKERS locust worker processes
#   make loadtest-stack                the same scenario against chat workers it starts itself
#   make peer-deps / peer-up / loadtest-peer / loadtest-browser-like   the Node baseline peer
#   make bench-density CLIENTS=8000    idle connections: one chat worker, then one Node peer

TARGET ?= http://127.0.0.1:8080
# Comma-separated base URLs to spread the users over (instead of TARGET); set by the stack.
TARGETS ?= $(LOADTEST_TARGETS)
USERS ?= 50
SPAWN_RATE ?= 10
DURATION ?= 30
ROOM_SIZE ?= 0
SENDERS ?= 5
# 2 msg/s keeps each sender under the service's default per-user limit (30 per 10 s).
RATE ?= 2
MSG_SIZE ?= 128
POLLING ?= 0
GRACE ?= 5
WORKERS ?= 2
LOCUST_ARGS ?=
UI_HOST ?= 127.0.0.1
UI_PORT ?= 8089
STACK_WORKERS ?= 2
STACK_ASYNC_MODE ?= gevent
STACK_DATABASE ?= sqlite
PEERS ?= 2
CLIENTS ?= 8000
IDLE ?= 30
DENSITY_SERVERS ?= chat,node
LOADTEST_STAMP := $(shell date +%Y%m%d-%H%M%S)
RESULTS ?= loadtest/results/$(LOADTEST_STAMP)
NODE_PEER := loadtest/node-peer

LOCUST := $(PY) -m locust -f loadtest/locustfile.py
SCENARIO_ARGS = --host $(TARGET) $(if $(TARGETS),--chat-targets $(TARGETS)) \
	-u $(USERS) -r $(SPAWN_RATE) --chat-duration $(DURATION) --chat-room-size $(ROOM_SIZE) \
	--chat-senders $(SENDERS) --chat-rate $(RATE) --chat-message-size $(MSG_SIZE) \
	--chat-polling-share $(POLLING) --chat-grace $(GRACE)
REPORT_ARGS = --csv $(RESULTS)/locust --csv-full-history --html $(RESULTS)/report.html

.PHONY: loadtest loadtest-ui loadtest-dist loadtest-stack peer-deps peer-up loadtest-peer \
	loadtest-browser-like bench-density

TEST_PREREQS += peer-deps

# Locust exits 1 when any request failed (a lost delivery is one): draw the plot anyway.
loadtest: deps
	@mkdir -p $(RESULTS)
	@echo "results: $(RESULTS)"
	$(LOCUST) --headless --only-summary $(SCENARIO_ARGS) $(REPORT_ARGS) $(LOCUST_ARGS); \
	status=$$?; $(PY) -m chatload.plot $(RESULTS)/locust || status=1; exit $$status

loadtest-dist: deps
	@mkdir -p $(RESULTS)
	@echo "results: $(RESULTS) (1 master + $(WORKERS) locust workers)"
	$(LOCUST) --headless --only-summary --processes $(WORKERS) $(SCENARIO_ARGS) $(REPORT_ARGS) \
		$(LOCUST_ARGS); \
	status=$$?; $(PY) -m chatload.plot $(RESULTS)/locust || status=1; exit $$status

loadtest-ui: deps
	@mkdir -p $(RESULTS)
	@echo "locust web UI: http://$(UI_HOST):$(UI_PORT)  (Ctrl-C to quit; results in $(RESULTS))"
	$(LOCUST) --web-host $(UI_HOST) --web-port $(UI_PORT) $(SCENARIO_ARGS) $(REPORT_ARGS) \
		$(LOCUST_ARGS)

# Until the cluster exists (or to compare modes): chat workers on a private redis-server.
loadtest-stack: deps
	$(PY) -m chatload.stack --servers chat --workers $(STACK_WORKERS) \
		--async-mode $(STACK_ASYNC_MODE) --database $(STACK_DATABASE) --workdir $(RESULTS)/stack \
		-- $(MAKE) --no-print-directory loadtest RESULTS=$(RESULTS)

$(NODE_PEER)/node_modules/.package-lock.json: $(NODE_PEER)/package-lock.json
	cd $(NODE_PEER) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

peer-deps: $(NODE_PEER)/node_modules/.package-lock.json

# PEERS Node peer processes on a private redis-server; prints their URLs; Ctrl-C stops them.
peer-up: deps peer-deps
	$(PY) -m chatload.stack --servers node --workers $(PEERS) \
		--workdir $(RESULTS)/stack

loadtest-peer: deps peer-deps
	$(PY) -m chatload.stack --servers node --workers $(PEERS) \
		--workdir $(RESULTS)/stack -- $(MAKE) --no-print-directory loadtest RESULTS=$(RESULTS)

# The browser-like case: socket.io-client on Node offers permessage-deflate, as browsers do.
loadtest-browser-like: peer-deps
	node $(NODE_PEER)/browser-like-client.js --targets $(or $(TARGETS),$(TARGET)) \
		--users $(USERS) --senders $(SENDERS) --rate $(RATE) --duration $(DURATION) \
		--message-size $(MSG_SIZE) --grace $(GRACE)

# Memory per connection, idle CPU, connect rate with CLIENTS idle WebSocket clients, the chat
# worker then the Node peer (chatload/density.py). Each side holds CLIENTS sockets: the open-file
# limit goes up to the hard limit first.
bench-density: deps peer-deps
	@mkdir -p $(RESULTS)
	ulimit -n $$(ulimit -Hn) && $(PY) -m chatload.density \
		--clients $(CLIENTS) --idle $(IDLE) --servers $(DENSITY_SERVERS) \
		--workdir $(RESULTS)/density --json $(RESULTS)/density.json
