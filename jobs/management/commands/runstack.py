"""`manage.py runstack`: the whole system on one machine, for local use.

Starts a web server, a Celery worker and Celery beat (and, when no broker is
reachable, a broker for the session) as one group of child processes, prefixes
their output with their names, and stops them all together: on Ctrl-C, on
SIGTERM, or as soon as any one of them exits.
"""

import contextlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from kombu.utils.url import maybe_sanitize_url

from core.cli import to_json
from jobs.processes import beat_argv, web_argv, worker_argv

logger = logging.getLogger(__name__)

FILESYSTEM_URL = "filesystem://"
STOP_GRACE_SECONDS = 15.0
REDIS_START_SECONDS = 10.0
# A web, worker or beat process that dies is started again, unless it keeps dying:
# more than RESTARTS_ALLOWED restarts within RESTART_WINDOW_SECONDS stop the stack.
RESTARTS_ALLOWED = 5
RESTART_WINDOW_SECONDS = 60.0


# --- choosing the broker ------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerChoice:
    kind: str  # "configured" | "redis-server" | "filesystem"
    url: str  # for "redis-server", filled in once the server is up
    label: str


def broker_reachable(url: str, timeout: float = 1.0) -> bool:
    """Redis: answers PING. AMQP: accepts a TCP connection. Others: not checked."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        import redis

        try:
            client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError, ValueError):
            return False
    if scheme in ("amqp", "amqps", "pyamqp"):
        parts = urlsplit(url)
        try:
            with socket.create_connection(
                (parts.hostname or "localhost", parts.port or 5672), timeout=timeout
            ):
                return True
        except (OSError, ValueError):
            return False
    return scheme not in ("", "memory")  # memory:// cannot be shared between processes


def broker_label(kind: str, configured_url: str, url: str = "", why: str = "") -> str:
    """The one line that says which broker the stack uses, and why."""
    shown = maybe_sanitize_url(configured_url) if configured_url else "(unset)"
    if kind == "configured":
        return f"{shown} (CELERY_BROKER_URL, reachable)"
    if kind == "redis-server":
        return (
            f"redis-server started for this session at {url or '127.0.0.1'} "
            f"({shown} is not reachable)"
        )
    why = why or f"{shown} is not reachable and redis-server is not installed"
    return (
        f"embedded filesystem transport, messages under {settings.DATA_DIR / 'broker'} "
        f"({why}; one machine only, no priorities)"
    )


def choose_broker(
    configured_url: str,
    redis_server_path: str | None,
    reachable: Callable[[str], bool] = broker_reachable,
) -> BrokerChoice:
    """The configured broker if it answers; else a session redis-server if installed;
    else kombu's filesystem transport under DATA_DIR/broker."""
    if configured_url and reachable(configured_url):
        kind, url = "configured", configured_url
    elif redis_server_path:
        kind, url = "redis-server", ""  # the URL is known once the server is up
    else:
        kind, url = "filesystem", FILESYSTEM_URL
    return BrokerChoice(kind, url, broker_label(kind, configured_url, url))


def child_env(base: Mapping[str, str], choice: BrokerChoice) -> dict[str, str]:
    """The environment of every child: the chosen broker, and Redis for live events."""
    env = dict(base, CELERY_BROKER_URL=choice.url, PYTHONUNBUFFERED="1")
    redis_users = ("REDIS_URL", "COUNTERSIGN_EVENTS_REDIS_URL", "COUNTERSIGN_METRICS_REDIS_URL")
    if choice.kind == "filesystem":  # no Redis: no live events, no metrics counters
        env.update(dict.fromkeys(redis_users, ""))
    elif choice.kind == "redis-server":
        env.update(dict.fromkeys(redis_users, choice.url))
    elif choice.url.startswith(("redis://", "rediss://")):
        # An explicit REDIS_URL (say, another database number) stays as configured.
        env.setdefault("REDIS_URL", choice.url)
        for name in redis_users[1:]:
            env.setdefault(name, env["REDIS_URL"])
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def redis_server_argv(path: str, port: int, data_dir: Path) -> list[str]:
    return [
        path,
        "--save",
        "",
        "--appendonly",
        "no",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
    ]


def app_commands(*, port: int, concurrency: int, schedule_file: str) -> list[tuple[str, list[str]]]:
    # The same web server as production (config/asgi.py): the API and the admin on
    # threads, a job's event stream live on the event loop, holding no thread; in DEBUG
    # the admin's static files are served too.
    return [
        ("web", web_argv(port=port)),
        ("worker", worker_argv(concurrency=concurrency, hostname="runstack@%h")),
        ("beat", beat_argv(schedule_file=schedule_file)),
    ]


def export_line(env: Mapping[str, str]) -> str:
    names = ("CELERY_BROKER_URL", "REDIS_URL", "COUNTERSIGN_EVENTS_REDIS_URL")
    return "export " + " ".join(f"{n}={shlex.quote(env[n])}" for n in names if n in env)


def login_hint() -> str:
    from accounts.management.commands.bootstrap import ADMIN_PASSWORD_ENV, ADMIN_USERNAME

    password = os.environ.get(ADMIN_PASSWORD_ENV) or "admin"
    try:
        admin = get_user_model().objects.filter(username=ADMIN_USERNAME, is_superuser=True).first()
    except DatabaseError:
        admin = None
    if settings.DEBUG and admin is not None and admin.check_password(password):
        return f"log in as {ADMIN_USERNAME} / {password}"
    return "log in with a superuser (python manage.py createsuperuser)"


# --- the process group ------------------------------------------------------------------


class Stack:
    """Children in one process group of their own, so Ctrl-C reaches only this
    process, which then stops them in order (app processes first, broker last)."""

    def __init__(self, write: Callable[[str], None], env: Mapping[str, str]) -> None:
        self.write = write
        self.env = dict(env)
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.argv: dict[str, list[str]] = {}
        self.restarts: list[float] = []
        self.pgid = 0
        self.stop_requested = threading.Event()
        self._lock = threading.Lock()

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            argv,
            env=self.env,
            cwd=settings.BASE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=self.pgid,
        )
        if not self.pgid:
            self.pgid = process.pid
        self.children.append((name, process))
        self.argv[name] = argv
        assert process.stdout is not None
        threading.Thread(
            target=self._pump, args=(name, process.stdout), daemon=True, name=f"runstack-{name}"
        ).start()
        return process

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self.write(f"{name:<6} | {line}")

    def say(self, line: str) -> None:
        with self._lock:
            self.write(line)

    def on_signal(self, signum: int, frame: Any) -> None:
        self.stop_requested.set()

    def supervise(self) -> int:
        """Until a stop signal: start again a web, worker or beat process that exited
        (a worker whose pool process died while starting exits, for one); stop all if
        the broker exits or a process keeps dying. Returns the exit code: 0 when asked
        to stop, else the code of the child that quit for good."""
        while not self.stop_requested.wait(0.5):
            for index, (name, process) in enumerate(list(self.children)):
                code = process.poll()
                if code is None:
                    continue
                if name == "redis" or not self._may_restart():
                    self.say(f"runstack | {name} exited with code {code}; stopping the stack")
                    self.stop()
                    return code if code > 0 else 1
                self.say(f"runstack | {name} exited with code {code}; starting it again")
                self.children.pop(index)
                try:
                    self.start(name, self.argv[name])
                except OSError as exc:  # its process group is gone, say
                    self.say(f"runstack | could not start {name} again ({exc}); stopping")
                    self.stop()
                    return code if code > 0 else 1
                break  # the list changed: look again on the next tick
        self.say("runstack | stopping")
        self.stop()
        return 0

    def _may_restart(self) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_SECONDS]
        self.restarts.append(now)
        return len(self.restarts) <= RESTARTS_ALLOWED

    def stop(self) -> None:
        apps = [(n, p) for n, p in self.children if n != "redis"]
        brokers = [(n, p) for n, p in self.children if n == "redis"]
        for group in (apps, brokers):
            for _, process in group:
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for _, process in group:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.pgid:  # leftovers, e.g. pool processes of a worker that was killed
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)


def wait_for_redis(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + REDIS_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if broker_reachable(url, timeout=0.5):
            return True
        time.sleep(0.1)
    return False


class Command(BaseCommand):
    help = (
        "Run web server + Celery worker + beat (+ a broker if none is reachable) for "
        "local use. Ctrl-C stops everything."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
        parser.add_argument(
            "--concurrency", type=int, default=2, help="worker pool size (default 2)"
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="print the chosen setup as one JSON line once started",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port, concurrency = options["port"], options["concurrency"]
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        if port_in_use(port):
            raise CommandError(f"port {port} on 127.0.0.1 is in use; pass --port")
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)

        stack = Stack(self.write_line, os.environ)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stack.on_signal)
        try:
            choice = self.start_broker(stack)
            stack.env = child_env(os.environ, choice)
            stack.say(f"runstack | broker: {choice.label}")
            schedule = str(settings.DATA_DIR / "celerybeat-schedule")
            for name, argv in app_commands(
                port=port, concurrency=concurrency, schedule_file=schedule
            ):
                stack.start(name, argv)
        except BaseException:
            stack.stop()
            raise
        self.print_guide(stack, choice, port, json_output=options["json"])
        code = stack.supervise()
        if code:
            raise CommandError(
                "a process of the stack exited; see its output above", returncode=code
            )

    def write_line(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()  # children's output must show as it comes, even when piped

    def start_broker(self, stack: Stack) -> BrokerChoice:
        redis_server = shutil.which("redis-server")
        choice = choose_broker(settings.CELERY_BROKER_URL, redis_server)
        if choice.kind != "redis-server" or redis_server is None:
            return choice
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        data_dir = settings.DATA_DIR / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        stack.env = dict(os.environ)
        process = stack.start("redis", redis_server_argv(redis_server, port, data_dir))
        configured = settings.CELERY_BROKER_URL
        if wait_for_redis(url, process):
            return replace(choice, url=url, label=broker_label(choice.kind, configured, url))
        logger.warning("redis-server did not start; using the filesystem broker")
        stack.stop()
        stack.children.clear()
        stack.pgid = 0
        return BrokerChoice(
            "filesystem",
            FILESYSTEM_URL,
            broker_label("filesystem", configured, why="redis-server did not start"),
        )

    def print_guide(
        self, stack: Stack, choice: BrokerChoice, port: int, *, json_output: bool
    ) -> None:
        web = f"http://127.0.0.1:{port}/"
        if json_output:
            stack.say(
                to_json(
                    {
                        "broker": {
                            "kind": choice.kind,
                            "url": maybe_sanitize_url(choice.url),
                            "label": choice.label,
                        },
                        "web": web,
                        "admin": web + "admin/",
                        "processes": {name: p.pid for name, p in stack.children},
                    },
                    pretty=False,
                )
            )
            return
        lines = [
            "",
            f"Countersign is starting: {web}admin/ ({login_hint()})",
        ]
        if choice.kind != "configured":
            lines += [
                "In another terminal, first point the commands at this broker:",
                f"  {export_line(stack.env)}",
            ]
        lines += [
            "Then:",
            '  python manage.py enqueue code-generation --input \'{"prompt": "hello world"}\''
            " --wait",
            "  python manage.py checkpoints list --pending",
            "  python manage.py checkpoints approve ID --as admin",
            "  python manage.py jobs list",
        ]
        if not settings.DEBUG:
            lines.append("DEBUG is off: the web server does not serve the admin's static files.")
        lines.append("Press Ctrl-C to stop everything.\n")
        stack.say("\n".join(lines))
