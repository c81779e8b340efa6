"""Settings are read in one place (chat/config.py), named when refused, and all documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chat import config, green
from chat.config import Config, ConfigError, async_mode, normalize_database_url

CHAT_PACKAGE = Path(config.__file__).parent
SECRET = "s" * 40


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment with none of the settings a test checks, and a fresh data dir."""
    for name in ("SECRET_KEY", "ASYNC_MODE", "ACCESS_LOG", "PORT", "DRAIN_SECONDS", "WEB_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def refusal(env: pytest.MonkeyPatch, name: str, value: str) -> str:
    """ConfigError's message for `name=value` (with a valid SECRET_KEY); fails if accepted."""
    env.setenv("SECRET_KEY", SECRET)
    env.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        Config()
    return str(refused.value)


@pytest.mark.parametrize("name", ["PORT", "DRAIN_SECONDS", "RATE_LIMIT_MESSAGES"])
def test_an_integer_setting_that_is_not_one_is_refused_by_name(env, name):
    refused = refusal(env, name, "ten")
    assert refused == f"{name}='ten': an integer is expected"


@pytest.mark.parametrize("value", ["-1", "65536"])
def test_a_port_outside_the_tcp_range_is_refused_by_name(env, value):
    refused = refusal(env, "PORT", value)
    assert refused == f"PORT={value}: a TCP port (0-65535) is expected"


def test_an_unknown_log_level_is_refused_by_name(env):
    refused = refusal(env, "LOG_LEVEL", "verbose")
    assert refused == (
        "LOG_LEVEL='verbose': one of CRITICAL, FATAL, ERROR, WARNING, WARN, INFO, DEBUG, NOTSET "
        "expected"
    )


def test_integer_settings_are_read_and_an_empty_one_takes_the_default(env):
    env.setenv("SECRET_KEY", SECRET)
    env.setenv("DRAIN_SECONDS", "7")
    env.setenv("PORT", "")
    cfg = Config()
    assert (cfg.DRAIN_SECONDS, cfg.PORT) == (7, 5000)


def test_a_secret_key_given_as_an_override_writes_no_key_file(env, tmp_path):
    cfg = Config({"SECRET_KEY": SECRET})
    assert cfg.SECRET_KEY == SECRET
    assert sorted(os.listdir(tmp_path / "data")) == []


def test_a_secret_key_from_the_environment_writes_no_key_file(env, tmp_path):
    env.setenv("SECRET_KEY", SECRET)
    assert Config().SECRET_KEY == SECRET
    assert sorted(os.listdir(tmp_path / "data")) == []


def test_without_a_secret_key_one_is_generated_once_and_kept(env, tmp_path):
    first = Config().SECRET_KEY
    key_file = tmp_path / "data" / "secret_key"
    assert key_file.read_text() == first
    assert len(first) == 64
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = Config()
    assert first == again.SECRET_KEY


def test_overrides_replace_what_the_environment_says(env):
    env.setenv("SECRET_KEY", SECRET)
    env.setenv("DRAIN_SECONDS", "7")
    assert Config({"DRAIN_SECONDS": 3}).DRAIN_SECONDS == 3


@pytest.mark.parametrize("name", ["AUTO_MIGRATE", "ACCESS_LOG", "DIRECT_WEBSOCKET_WRITES"])
def test_a_switch_that_is_no_known_word_is_refused_by_name(env, name):
    refused = refusal(env, name, "ture")
    assert refused == (f"{name}='ture': one of 1, true, yes, on, 0, false, no, off is expected")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("0", False), ("1", True), ("true", True), ("Off", False)],
)
def test_access_log_is_a_setting_of_config(env, value, expected):
    env.setenv("SECRET_KEY", SECRET)
    if value is not None:
        env.setenv("ACCESS_LOG", value)
    assert Config().ACCESS_LOG is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "gevent"), ("", "gevent"), ("eventlet", "eventlet"), ("threading", "threading")],
)
def test_async_mode_is_read_by_one_function_for_config_and_the_entry_point(env, value, expected):
    env.setenv("SECRET_KEY", SECRET)
    if value is not None:
        env.setenv("ASYNC_MODE", value)
    cfg = Config()
    assert (async_mode(), cfg.ASYNC_MODE) == (expected, expected)


def test_an_unknown_async_mode_is_refused_before_anything_is_patched(env):
    env.setenv("ASYNC_MODE", "asyncio")
    expected = "ASYNC_MODE must be one of gevent, eventlet, threading, not 'asyncio'"
    with pytest.raises(ConfigError) as refused:
        green.patch()
    assert str(refused.value) == expected
    with pytest.raises(ConfigError) as refused:
        async_mode()
    assert str(refused.value) == expected


def test_no_module_but_config_reads_the_environment():
    readers = {
        str(path.relative_to(CHAT_PACKAGE))
        for path in CHAT_PACKAGE.rglob("*.py")
        if "migrations" not in path.parts
        and re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text())
    }
    assert readers == {"config.py"}


@pytest.mark.parametrize(
    ("name", "value", "schemes"),
    [
        (
            "DATABASE_URL",
            "bogus://x",
            "sqlite://, postgresql://, postgres://, postgresql+psycopg2://",
        ),
        (
            "DATABASE_URL",
            "chat.db",
            "sqlite://, postgresql://, postgres://, postgresql+psycopg2://",
        ),
        (
            "REDIS_URL",
            "notaurl",
            "redis://, rediss://, unix://, redis+sentinel://, redis+cluster://",
        ),
        (
            "REDIS_URL",
            "http://127.0.0.1:6379",
            "redis://, rediss://, unix://, redis+sentinel://, redis+cluster://",
        ),
        (
            "REDIS_URL",
            "redis://",
            "redis://, rediss://, unix://, redis+sentinel://, redis+cluster://",
        ),
    ],
)
def test_a_url_setting_of_no_supported_scheme_is_refused_by_name(env, name, value, schemes):
    refused = refusal(env, name, value)
    assert refused == (f"{name}={value!r}: a URL starting with one of {schemes} is expected")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATABASE_URL", "sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("DATABASE_URL", "postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("DATABASE_URL", "postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("DATABASE_URL", "postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("REDIS_URL", "rediss://h:6380/0", "rediss://h:6380/0"),
        ("REDIS_URL", "unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("REDIS_URL", "redis+sentinel://h1:26379,h2:26379/0/chat", None),
        ("REDIS_URL", "redis+cluster://h1:7000,h2:7001", None),
    ],
)
def test_url_settings_of_the_supported_schemes_are_taken(env, name, value, expected):
    env.setenv("SECRET_KEY", SECRET)
    env.setenv(name, value)
    cfg = Config()
    got = cfg.SQLALCHEMY_DATABASE_URI if name == "DATABASE_URL" else cfg.REDIS_URL
    assert got == (expected or value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "REDIS_URL",
            "notaurl",
            "REDIS_URL='notaurl': a URL starting with one of redis://, rediss://, unix://, "
            "redis+sentinel://, redis+cluster:// is expected",
        ),
        (
            "DATABASE_URL",
            "bogus://x",
            "DATABASE_URL='bogus://x': a URL starting with one of sqlite://, postgresql://, "
            "postgres://, postgresql+psycopg2:// is expected",
        ),
    ],
)
def test_the_worker_exits_1_with_one_line_naming_a_bad_url(tmp_path, name, value, expected):
    environ = {
        key: val
        for key, val in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PORT")
    }
    environ.update(
        {
            name: value,
            "ASYNC_MODE": "threading",
            "SECRET_KEY": SECRET,
            "CHAT_DATA_DIR": str(tmp_path),
            "PORT": "0",
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "chat"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (1, [expected], "")


# Each integer setting and its minimum (test_every_integer_setting_has_its_bound checks the
# list is complete): sizes, intervals, timeouts and limits >= 1; 0 where it means none/at once.
MINIMUMS = {
    "TOKEN_TTL_SECONDS": 1,
    "MAX_HTTP_BUFFER_SIZE": 1,
    "RATE_LIMIT_MESSAGES": 1,
    "RATE_LIMIT_WINDOW_SECONDS": 1,
    "RATE_LIMIT_LOGIN_FAILURES": 1,
    "RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS": 1,
    "RATE_LIMIT_REGISTRATIONS": 1,
    "RATE_LIMIT_JOINS": 1,
    "RATE_LIMIT_ROOM_CREATIONS": 1,
    "RATE_LIMIT_READS": 1,
    "TYPING_INTERVAL_SECONDS": 1,
    "SESSION_CHECK_SECONDS": 1,
    "TRUSTED_PROXY_HOPS": 0,
    "DATABASE_TIMEOUT_SECONDS": 1,
    "PRESENCE_TTL_SECONDS": 1,
    "MQ_UNSUBSCRIBE_DELAY_SECONDS": 0,
    "MAX_CONNECTIONS_PER_USER": 1,
    "DRAIN_SECONDS": 0,
    "MAX_SOCKET_QUEUE_BYTES": 1,
    "AUTH_TIMEOUT_SECONDS": 1,
    "HEADER_TIMEOUT_SECONDS": 1,
    "PING_INTERVAL_SECONDS": 1,
    "PING_TIMEOUT_SECONDS": 1,
}


@pytest.mark.parametrize(("name", "minimum"), sorted(MINIMUMS.items()))
def test_an_integer_setting_below_its_minimum_is_refused_by_name(env, name, minimum):
    refused = refusal(env, name, str(minimum - 1))
    expected = f"{name}={minimum - 1}: an integer at least {minimum} is expected"
    if name == "DATABASE_TIMEOUT_SECONDS":
        expected = f"{name}=0: an integer from 1 to 2147483 is expected"
    assert refused == expected
    env.setenv(name, str(minimum))
    assert getattr(Config(), name) == minimum


def test_a_database_timeout_past_postgresqls_statement_timeout_is_refused(env):
    refused = refusal(env, "DATABASE_TIMEOUT_SECONDS", "2147484")
    assert refused == ("DATABASE_TIMEOUT_SECONDS=2147484: an integer from 1 to 2147483 is expected")


def test_every_integer_setting_has_its_bound(env):
    """MINIMUMS above names every integer setting but PORT (checked on its own)."""
    source = Path(config.__file__).read_text()
    names = set(re.findall(r'_env_int\(\s*"([A-Z_]+)"', source))
    assert sorted(names - {"PORT"}) == sorted(MINIMUMS)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///var/chat.db", "sqlite:///{cwd}/var/chat.db"),
        ("sqlite:////srv/chat.db", "sqlite:////srv/chat.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_a_relative_sqlite_path_is_the_working_directorys_and_postgresql_uses_psycopg2(
    given, expected, monkeypatch, tmp_path
):
    # Flask-SQLAlchemy would otherwise read a relative SQLite path against the app's instance
    # folder: `make bench-density`, whose worker was given one, failed to open its database.
    monkeypatch.chdir(tmp_path)
    assert normalize_database_url(given) == expected.format(cwd=tmp_path.resolve())
