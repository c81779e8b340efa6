"""The benchmark campaign: run a list of scenarios, one bounded locust run each, into one table.

    .venv/bin/python -m chatload.campaign --list
    .venv/bin/python -m chatload.campaign --only size-100,size-500 [--out DIR]

(`loadtest/campaign.py` runs the same.) One module per job:

- scenarios: what runs (Scenario, SCENARIOS by name);
- setup: the servers a group of scenarios runs against (Setup), started and stopped by
  testkit's process library;
- measure: one locust run and its figures (CPU by role, load average, the message handler's
  histogram, the send window);
- table: the results table's rows;
- cli: the command line, which ties them together.

Every server set-up is started here and stopped after its scenarios:
- chat: testkit.cluster's Cluster (N workers, private redis-server, nginx in front) on one
  fresh PostgreSQL database for the whole campaign (created on 127.0.0.1:5432, dropped at
  the end) and one SECRET_KEY, so the users registered once (chatload.accounts, through
  nginx) keep their tokens across set-ups; the load test's users connect through nginx;
- node: N Node peer processes (loadtest/node-peer) on a private redis-server, which the users
  connect to directly (round-robin), as chatload.stack does.

Per run it records locust's summary (locust_chat_summary.json), the load average before and
after, and the CPU seconds of the servers (chat workers or Node peers), of nginx, of redis and
of the load generator, so the cost per delivery can be compared across room sizes. Before each
run it waits (bounded) for the machine to be quiet: load average below --quiet-load.
Results: DIR/results.md (the table), DIR/results.jsonl, one locust directory per run.
"""
