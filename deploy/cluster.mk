# A cluster on this machine: N chat workers on Redis behind nginx (testkit.cluster, in
# services/testkit/testkit/cluster.py).
#   make cluster                 foreground; Ctrl-C stops everything it started
#   make cluster-up              detached; returns once every worker and nginx answer
#   make cluster-down            stops the detached cluster by its recorded PIDs
# Settings: WORKERS (3), HTTP_PORT (8080; workers on HTTP_PORT+1..HTTP_PORT+WORKERS),
# REDIS_URL (default: a private redis-server; REDIS=cluster: a private 3-primary Redis Cluster
# on loopback, its nodes named in REDIS_URL as redis+cluster://h:p,h:p,h:p), DATABASE_URL (default: one SQLite file in WAL
# mode in $(CLUSTER_DIR)/data), ASYNC_MODE (gevent), CLUSTER_DIR (run/cluster),
# NGINX_CONNECTIONS_PER_ADDRESS (2000: nginx's limit_conn per client address).
#
# loadtest/loadtest.mk also has a WORKERS (locust processes, default 2). Neither file's default
# may leak into the other's targets, so the cluster takes WORKERS only when it comes from the
# command line or the environment, and defines no global default of its own.
CLUSTER_WORKERS = $(if $(filter command line environment,$(origin WORKERS)),$(WORKERS),3)
HTTP_PORT ?= 8080
CLUSTER_DIR ?= run/cluster
CLUSTER_ENV = WORKERS=$(CLUSTER_WORKERS) HTTP_PORT=$(HTTP_PORT) CLUSTER_DIR=$(CLUSTER_DIR) \
	REDIS_URL=$(REDIS_URL) REDIS=$(REDIS) DATABASE_URL=$(DATABASE_URL) ASYNC_MODE=$(ASYNC_MODE)

.PHONY: cluster cluster-up cluster-down cluster-status

cluster: deps
	$(CLUSTER_ENV) $(PY) -m testkit.cluster run

cluster-up: deps
	$(CLUSTER_ENV) $(PY) -m testkit.cluster up

cluster-down:
	$(CLUSTER_ENV) $(PY) -m testkit.cluster down

cluster-status:
	$(CLUSTER_ENV) $(PY) -m testkit.cluster status
