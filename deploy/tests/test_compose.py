"""docker-compose.yml is valid and runs what the local launcher runs.

No Docker engine runs here, so `docker-compose config` (Debian's docker-compose) validates
and normalises the file, and the test compares the result with testkit.cluster: the same
worker and migration commands, the same nginx site template with the same upstream
parameters, and a value for every placeholder of that template.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from testkit.cluster import (
    DEFAULT_CONNECTIONS_PER_ADDRESS,
    MIGRATE_COMMAND,
    NGINX_DIR,
    REPO_ROOT,
    WORKER_COMMAND,
    render_template,
    sid_routes,
    sid_upstreams,
    upstream_servers,
)
from testkit.processes import require_program

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
WORKERS = ["worker1", "worker2", "worker3"]
# What the operator must give: compose refuses to run without any of them.
SECRETS = {
    "SECRET_KEY": "compose-config-test-secret-key-0123456789",
    "POSTGRES_PASSWORD": "pg-password-for-the-test",
    "REDIS_PASSWORD": "redis-password-for-the-test",
}


def compose_config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`docker-compose config` of the repository's compose file, with only `env` set of ours."""
    docker_compose = require_program("docker-compose")
    base = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [docker_compose, "-f", str(COMPOSE_FILE), "config", *args],
        env={**base, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def yaml_interpreter(docker_compose: str) -> str:
    """The Python that runs docker-compose: it has PyYAML, which our venv does not need."""
    first_line = Path(docker_compose).read_text(errors="replace").splitlines()[0]
    assert first_line.startswith("#!"), f"{docker_compose} is not a script: {first_line!r}"
    return first_line[2:].strip().split()[0]


@pytest.fixture(scope="module")
def compose() -> dict:
    """`docker-compose config` of the repository's compose file, as a dict."""
    docker_compose = require_program("docker-compose")
    out = compose_config(SECRETS)
    assert out.returncode == 0, out.stderr
    to_json = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    parsed = subprocess.run(
        [yaml_interpreter(docker_compose), "-c", to_json],
        input=out.stdout,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(parsed.stdout)


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(missing):
    out = compose_config({k: v for k, v in SECRETS.items() if k != missing}, "-q")
    assert out.returncode != 0
    assert f"set {missing}" in out.stderr, out.stderr


def test_the_secrets_reach_postgres_redis_and_the_workers(compose):
    services = compose["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    command = services["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == SECRETS["REDIS_PASSWORD"]
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == SECRETS["REDIS_PASSWORD"]
    for name in [*WORKERS, "migrate"]:
        env = services[name]["environment"]
        assert env["DATABASE_URL"] == (
            f"postgresql://chat:{SECRETS['POSTGRES_PASSWORD']}@postgres:5432/chat"
        )
        assert env["SECRET_KEY"] == SECRETS["SECRET_KEY"]
    for name in WORKERS:
        assert services[name]["environment"]["TRUSTED_PROXY_HOPS"] == "1"


REDIS_CLUSTER = ["redis-node-1", "redis-node-2", "redis-node-3", "redis-cluster-create"]


def test_compose_has_postgres_redis_migrate_three_workers_and_nginx(compose):
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        "migrate",
        *WORKERS,
        "nginx",
        *REDIS_CLUSTER,
    }
    # The Redis Cluster topology starts only with its profile; the default is one Redis.
    assert {n for n, s in compose["services"].items() if s.get("profiles")} == set(REDIS_CLUSTER)


def test_the_redis_cluster_profile_creates_a_three_primary_cluster(compose):
    services = compose["services"]
    for name in REDIS_CLUSTER:
        assert services[name]["profiles"] == ["redis-cluster"]
    for name in REDIS_CLUSTER[:3]:
        assert "--cluster-enabled" in services[name]["command"]
    create = " ".join(services["redis-cluster-create"]["command"])
    nodes = "redis-node-1:6379 redis-node-2:6379 redis-node-3:6379"
    assert f"--cluster create {nodes} --cluster-replicas 0 --cluster-yes" in create
    assert set(services["redis-cluster-create"]["depends_on"]) == set(REDIS_CLUSTER[:3])


def test_the_redis_cluster_nodes_require_the_password_and_the_workers_can_name_them(compose):
    services = compose["services"]
    for name in REDIS_CLUSTER[:3]:
        command = services[name]["command"]
        assert command[command.index("--requirepass") + 1] == SECRETS["REDIS_PASSWORD"]
        assert command[command.index("--masterauth") + 1] == SECRETS["REDIS_PASSWORD"]
    for name in REDIS_CLUSTER:
        assert services[name]["environment"]["REDISCLI_AUTH"] == SECRETS["REDIS_PASSWORD"]
    nodes = "redis-node-1:6379,redis-node-2:6379,redis-node-3:6379"
    out = compose_config(
        {**SECRETS, "COMPOSE_REDIS_SCHEME": "redis+cluster", "COMPOSE_REDIS_NODES": nodes}
    )
    assert out.returncode == 0, out.stderr
    url = f"redis+cluster://:{SECRETS['REDIS_PASSWORD']}@{nodes}"
    assert out.stdout.count(f"REDIS_URL: {url}\n") == len(WORKERS)


def test_workers_run_the_launchers_worker_command_from_one_image(compose):
    services = compose["services"]
    for name in WORKERS:
        worker = services[name]
        assert worker["command"] == list(WORKER_COMMAND)
        assert worker["build"]["dockerfile"] == "services/chat/Dockerfile"
        assert Path(worker["build"]["context"]) == REPO_ROOT
        assert worker["environment"]["NODE_ID"] == name
        assert worker["environment"]["SID_TAG"] == name
        assert worker["environment"]["AUTO_MIGRATE"] == "0"
        assert worker["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert worker["environment"]["REDIS_URL"] == (
            f"redis://:{SECRETS['REDIS_PASSWORD']}@redis:6379"
        )
        assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert len({services[n]["image"] for n in WORKERS}) == 1
    assert len({services[n]["environment"]["SECRET_KEY"] for n in WORKERS}) == 1


def test_the_image_runs_the_same_worker_command():
    dockerfile = (REPO_ROOT / "services" / "chat" / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd and json.loads(cmd.group(1)) == list(WORKER_COMMAND)


def test_migration_runs_once_with_the_launchers_command(compose):
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == list(MIGRATE_COMMAND)
    assert migrate["image"] == compose["services"]["worker1"]["image"]
    assert migrate["restart"] == "no"


def test_nginx_uses_the_same_site_template_and_upstream_parameters(compose):
    nginx = compose["services"]["nginx"]
    mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in nginx["volumes"]}
    assert mounts["/etc/nginx/templates"] == NGINX_DIR / "templates"
    env = nginx["environment"]
    assert env["CHAT_UPSTREAM_SERVERS"] == upstream_servers([f"{w}:5000" for w in WORKERS])
    # Each worker's own upstream and the route of its session ids, as the launcher renders them.
    assert env["CHAT_SID_UPSTREAMS"] == sid_upstreams({w: f"{w}:5000" for w in WORKERS})
    assert env["CHAT_SID_ROUTES"] == sid_routes(WORKERS)
    assert env["CHAT_CONNECTIONS_PER_ADDRESS"] == str(DEFAULT_CONNECTIONS_PER_ADDRESS)
    # Every placeholder of the site template has a value, so the image's envsubst leaves
    # none behind (render_template raises on a missing one).
    template = (NGINX_DIR / "templates" / "chat.conf.template").read_text()
    rendered = render_template(template, env)
    assert "${" not in rendered
    assert f"listen {env['CHAT_LISTEN']};" in rendered
    assert nginx["ports"][0]["target"] == int(env["CHAT_LISTEN"])
    # Only nginx is reachable from outside the compose network.
    assert [name for name, s in compose["services"].items() if s.get("ports")] == ["nginx"]
