"""py-spy raw stacks grouped by what the worker was doing, told by whole file paths."""

from __future__ import annotations

from chatload.pyspy_groups import group, main

HANDLER = (
    "Server._handle_event_internal (socketio/server.py:612);handler (chat/realtime/namespace.py:56)"
)


def stack(*frames: str) -> list[str]:
    return [HANDLER, *frames]


def test_the_store_is_told_by_sqlalchemys_path_whatever_the_function():
    frames = stack(
        "post_message (chat/domain/messages.py:44)",
        "Connection._execute_context (sqlalchemy/engine/base.py:1842)",
    )
    assert group(frames) == "handler: database (SQLAlchemy, psycopg2)"


def test_redis_py_in_a_handler_counts_as_the_rate_limit():
    frames = stack("Redis.execute_command (redis/client.py:559)")
    assert group(frames) == "handler: rate limit (Redis)"


def test_a_file_merely_named_like_a_library_does_not_count_as_it():
    frames = stack("Message.to_dict (chat/models.py:85)", "base (somewhere/base.py:1)")
    assert group(frames) == "handler: Flask-SocketIO/validation/other"


def test_the_shares_add_up_to_all_samples(tmp_path, capsys):
    raw = tmp_path / "profile.raw.txt"
    raw.write_text(
        ";".join(stack("Connection._execute_context (sqlalchemy/engine/base.py:1842)"))
        + " 3\n"
        + ";".join(stack("Redis.execute_command (redis/client.py:559)"))
        + " 1\n\n"
    )
    main(str(raw))
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "samples 4",
        " 75.0%  handler: database (SQLAlchemy, psycopg2)",
        " 25.0%  handler: rate limit (Redis)",
    ]
