"""runstack's broker choice and process plan, and runworker's command line.

Neither command is launched here (processes are covered elsewhere); only the
pure parts are, against the real local Redis where reachability matters.
"""

import json
import socket

import pytest

from jobs.management.commands.runstack import (
    BrokerChoice,
    app_commands,
    broker_reachable,
    child_env,
    choose_broker,
    redis_server_argv,
)

LIVE_REDIS = "redis://127.0.0.1:6379/0"
DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_a_reachable_configured_broker_is_used():
    choice = choose_broker(LIVE_REDIS, "/usr/bin/redis-server")

    assert (choice.kind, choice.url) == ("configured", LIVE_REDIS)
    assert "reachable" in choice.label


def test_an_unreachable_broker_falls_back_to_a_session_redis_server():
    choice = choose_broker(DEAD_REDIS, "/usr/bin/redis-server")

    assert choice.kind == "redis-server"
    assert "redis://127.0.0.1:1/0 is not reachable" in choice.label


def test_without_redis_server_the_filesystem_broker_is_used():
    choice = choose_broker(DEAD_REDIS, None)

    assert (choice.kind, choice.url) == ("filesystem", "filesystem://")
    assert "redis-server is not installed" in choice.label


def test_reachability_can_be_injected_and_passwords_are_not_shown():
    seen = []
    choice = choose_broker(
        "redis://:hunter2@example.invalid:6379/0",
        None,
        reachable=lambda url: seen.append(url) or True,
    )

    assert choice.kind == "configured" and seen == ["redis://:hunter2@example.invalid:6379/0"]
    assert "hunter2" not in choice.label


def test_redis_reachability_against_the_real_server():
    assert broker_reachable(LIVE_REDIS)
    assert not broker_reachable(DEAD_REDIS, timeout=1.0)


def test_amqp_reachability_is_a_tcp_connect():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert broker_reachable(f"amqp://guest:guest@127.0.0.1:{port}//")
    assert not broker_reachable(f"amqp://guest:guest@127.0.0.1:{port}//")


def test_memory_transport_is_never_usable_across_processes():
    assert not broker_reachable("memory://")


@pytest.mark.parametrize(
    ("choice", "base", "expected"),
    [
        (
            BrokerChoice("filesystem", "filesystem://", ""),
            {},
            {
                "CELERY_BROKER_URL": "filesystem://",
                "REDIS_URL": "",
                "COUNTERSIGN_EVENTS_REDIS_URL": "",
                "COUNTERSIGN_METRICS_REDIS_URL": "",
            },
        ),
        (
            BrokerChoice("redis-server", "redis://127.0.0.1:5555/0", ""),
            {"REDIS_URL": "redis://elsewhere:6379/0"},
            {
                "CELERY_BROKER_URL": "redis://127.0.0.1:5555/0",
                "REDIS_URL": "redis://127.0.0.1:5555/0",
                "COUNTERSIGN_EVENTS_REDIS_URL": "redis://127.0.0.1:5555/0",
                "COUNTERSIGN_METRICS_REDIS_URL": "redis://127.0.0.1:5555/0",
            },
        ),
        (
            BrokerChoice("configured", LIVE_REDIS, ""),
            {"REDIS_URL": "redis://127.0.0.1:6379/3"},
            {
                "CELERY_BROKER_URL": LIVE_REDIS,
                "REDIS_URL": "redis://127.0.0.1:6379/3",
                "COUNTERSIGN_EVENTS_REDIS_URL": "redis://127.0.0.1:6379/3",
                "COUNTERSIGN_METRICS_REDIS_URL": "redis://127.0.0.1:6379/3",
            },
        ),
    ],
)
def test_children_get_the_chosen_broker(choice, base, expected):
    env = child_env({"PATH": "/bin", **base}, choice)

    assert {k: env[k] for k in expected} == expected
    assert env["PATH"] == "/bin" and env["PYTHONUNBUFFERED"] == "1"


def test_session_redis_server_keeps_nothing_on_disk(tmp_path):
    argv = redis_server_argv("/usr/bin/redis-server", 6390, tmp_path)

    assert argv == [
        "/usr/bin/redis-server",
        "--save",
        "",
        "--appendonly",
        "no",
        "--port",
        "6390",
        "--bind",
        "127.0.0.1",
        "--dir",
        str(tmp_path),
    ]


def test_the_stack_runs_web_worker_and_beat():
    commands = dict(app_commands(port=8123, concurrency=3, schedule_file="/tmp/schedule"))

    assert list(commands) == ["web", "worker", "beat"]
    assert commands["web"][2:] == [
        "uvicorn",
        "config.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--http",
        "httptools",
        "--loop",
        "uvloop",
    ]
    worker = commands["worker"]
    assert worker[worker.index("--concurrency") + 1] == "3" and "fair" in worker
    assert commands["beat"][-2:] == ["--schedule", "/tmp/schedule"]


def test_runworker_dry_run_prints_the_celery_command_line(cli, settings, tmp_path):
    settings.DATA_DIR = tmp_path

    argv = json.loads(
        cli("runworker", "--dry-run", "--json", "--queues", "a, b", "--concurrency", "4", "--beat")
    )["argv"]

    assert argv[1:6] == ["-m", "celery", "-A", "config", "worker"]
    assert argv[argv.index("--queues") + 1] == "a,b"
    assert argv[argv.index("--concurrency") + 1] == "4"
    assert argv[argv.index("--schedule") + 1] == str(tmp_path / "celerybeat-schedule")
    assert "celery -A config worker" in cli("runworker", "--dry-run")


def test_a_stack_process_that_dies_is_started_again(tmp_path):
    """A real runstack on a database of its own: its worker, SIGKILLed, is started
    again, and the stack still stops cleanly when asked."""
    import os
    import queue as queues
    import signal
    import subprocess
    import sys
    import threading
    import uuid
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'stack.sqlite3'}",
        "COUNTERSIGN_DATA_DIR": str(tmp_path / "data"),
        "CELERY_BROKER_URL": LIVE_REDIS,
        "COUNTERSIGN_QUEUE": f"runstack-test-{uuid.uuid4().hex[:8]}",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=root, env=env, check=True, timeout=300
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stack = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "runstack",
            "--port",
            str(port),
            "--json",
            "--concurrency",
            "1",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queues.Queue[str] = queues.Queue()
    assert stack.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in stack.stdout], daemon=True).start()

    def line_with(words: str, timeout: float = 60.0) -> str:
        while True:
            line = lines.get(timeout=timeout)  # queue.Empty fails the test
            if words in line:
                return line

    try:
        started = json.loads(line_with('"processes"'))
        worker = started["processes"]["worker"]
        os.kill(worker, signal.SIGKILL)
        assert "starting it again" in line_with("worker exited with code")
        assert stack.poll() is None
    finally:
        stack.send_signal(signal.SIGINT)
        code = stack.wait(timeout=60)
    assert code == 0
