"""Structured logs: the context fields, the two formats, and the request id middleware."""

import io
import json
import logging
import os
import re
import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client

from config.middleware import RequestIdMiddleware
from core import logs

UUID_HEX = re.compile(r"[0-9a-f]{32}")


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    """A record as `logger.info(message, *args, extra=extra)` makes it, through the filter."""
    made = logging.getLogger("countersign.test").makeRecord(
        "countersign.test",
        logging.INFO,
        __file__,
        1,
        message,
        args or ("world",),
        None,
        extra=extra or None,
    )
    logs.ContextFilter().filter(made)
    return made


def test_bind_sets_the_fields_for_the_block_and_restores_them_after():
    with logs.bind(request_id="r1", job_id="j1"):
        with logs.bind(job_id="j2", step_key="fetch"):
            assert logs.current() == {"request_id": "r1", "job_id": "j2", "step_key": "fetch"}
        assert logs.current() == {"request_id": "r1", "job_id": "j1"}
        with pytest.raises(RuntimeError), logs.bind(step_key="boom"):
            raise RuntimeError("a failing step still resets its key")
        assert logs.current() == {"request_id": "r1", "job_id": "j1"}
    assert logs.current() == {}


def test_update_inside_a_bind_is_undone_by_its_exit():
    with logs.bind(job_id="j1", request_id=None):
        logs.update(request_id="r9")
        assert logs.current() == {"job_id": "j1", "request_id": "r9"}
    assert logs.current() == {}


def test_an_unknown_field_is_refused():
    with pytest.raises(TypeError, match="user"), logs.bind(user="x"):
        pass


def test_json_lines_carry_the_context_and_extra_fields():
    formatter = logs.JsonFormatter()
    with logs.bind(request_id="req-1", job_id="job-1", step_key="fetch", checkpoint_id=7):
        line = formatter.format(record(job_type="test-noop", attempt=2, opaque=object()))

    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "hello world"
    assert (entry["level"], entry["logger"]) == ("INFO", "countersign.test")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["timestamp"])
    assert {k: entry[k] for k in logs.FIELDS} == {
        "request_id": "req-1",
        "job_id": "job-1",
        "job_type": "test-noop",
        "step_key": "fetch",
        "checkpoint_id": 7,
    }
    assert entry["attempt"] == 2
    assert "opaque" not in entry  # not JSON-serialisable: left out, the line still written
    assert not {"args", "msg", "exc_info", "levelno", "pathname"} & set(entry)


def test_a_value_given_in_extra_wins_over_the_bound_one():
    with logs.bind(job_id="bound"):
        entry = json.loads(logs.JsonFormatter().format(record(job_id="explicit")))
    assert entry["job_id"] == "explicit"


def test_unset_fields_are_left_out():
    entry = json.loads(logs.JsonFormatter().format(record()))
    assert not set(logs.FIELDS) & set(entry)


def test_an_exception_is_one_string_field():
    try:
        raise ValueError("bad input")
    except ValueError:
        made = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = json.loads(logs.JsonFormatter().format(made))
    assert entry["exception"].startswith("Traceback")
    assert "ValueError: bad input" in entry["exception"]


def test_text_lines_end_with_the_context_as_key_value_pairs():
    formatter = logs.TextFormatter()
    with logs.bind(request_id="req-1", job_id="job-1", step_key="write file"):
        line = formatter.format(record())
    assert line.endswith(
        ' INFO countersign.test hello world request_id=req-1 job_id=job-1 step_key="write file"'
    )
    assert formatter.format(record()).endswith("countersign.test hello world")


def test_the_configured_console_handler_adds_the_context():
    """settings.LOGGING as configured in this process: the root's console handler."""
    handler = next(
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, logs.ContextFilter) for f in h.filters)
    )
    assert isinstance(
        handler.formatter,
        logs.TextFormatter if settings.LOG_FORMAT == "text" else logs.JsonFormatter,
    )
    stream = io.StringIO()
    old = handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        with logs.bind(request_id="wired-req", job_id="wired-job"):
            logging.getLogger("agents.test").warning("through the real handler")
    finally:
        handler.setStream(old)  # type: ignore[attr-defined]
    assert "wired-req" in stream.getvalue() and "wired-job" in stream.getvalue()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "1"}, "text"),
        ({"DEBUG": "0", "SECRET_KEY": "x" * 50}, "json"),
        ({"DEBUG": "0", "SECRET_KEY": "x" * 50, "LOG_FORMAT": "TEXT"}, "text"),
        ({"DEBUG": "1", "LOG_FORMAT": "json"}, "json"),
    ],
)
def test_log_format_defaults_to_json_without_debug(env, expected):
    code = (
        "from django.conf import settings; "
        "print(settings.LOG_FORMAT, settings.LOGGING['handlers']['console']['formatter'])"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "LOG_FORMAT")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == [expected, expected]


def test_an_unknown_log_format_stops_the_start():
    done = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env={**os.environ, "LOG_FORMAT": "xml"},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "LOG_FORMAT must be json or text" in done.stderr


# --- the request id middleware ----------------------------------------------------------


def test_a_given_request_id_is_echoed():
    response = Client().get("/healthz", headers={"X-Request-ID": "abc-123_x.y"})
    assert response["X-Request-ID"] == "abc-123_x.y"


@pytest.mark.parametrize("given", [None, "", "has spaces", "a" * 500, "new\nline", "é"])
def test_a_missing_or_malformed_request_id_is_replaced(given):
    headers = {"X-Request-ID": given} if given is not None else {}
    response = Client().get("/healthz", headers=headers)
    assert UUID_HEX.fullmatch(response["X-Request-ID"])


@pytest.mark.django_db
def test_djangos_own_4xx_lines_carry_the_request_id(caplog):
    """Django logs "Unauthorized: /api/…" after the middleware has returned."""
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = Client().get("/api/v1/jobs/", headers={"X-Request-ID": "req-401"})
    assert response.status_code == 401
    [line] = [r for r in caplog.records if r.name == "django.request"]
    logs.ContextFilter().filter(line)  # what the console handler does
    assert line.request_id == "req-401"


def test_a_100_character_id_is_kept_and_101_is_not():
    assert logs.clean_request_id("a" * 100) == "a" * 100
    assert UUID_HEX.fullmatch(logs.clean_request_id("a" * 101))


def test_the_id_is_bound_while_the_view_runs_and_not_after():
    seen = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(logs.get_request_id())
        return HttpResponse()

    response = RequestIdMiddleware(view)(_request({"HTTP_X_REQUEST_ID": "sync-1"}))
    assert seen == ["sync-1"] and response["X-Request-ID"] == "sync-1"
    assert logs.get_request_id() == ""


def test_the_async_path_binds_the_id_too():
    seen = []

    async def view(request: HttpRequest) -> HttpResponse:
        seen.append(logs.get_request_id())
        return HttpResponse()

    assert RequestIdMiddleware.async_capable and RequestIdMiddleware.sync_capable
    middleware = RequestIdMiddleware(view)
    assert iscoroutinefunction(middleware)  # Django awaits it without a thread switch
    response = async_to_sync(middleware)(_request({"HTTP_X_REQUEST_ID": "async-1"}))
    assert seen == ["async-1"] and response["X-Request-ID"] == "async-1"
    assert logs.get_request_id() == ""


@pytest.mark.django_db
def test_the_async_stream_view_answers_with_a_request_id():
    get = async_to_sync(AsyncClient().get)
    response = get(
        "/api/v1/jobs/00000000-0000-0000-0000-000000000000/stream/",
        headers={"X-Request-ID": "sse-1"},
    )
    assert response.status_code == 401
    assert response["X-Request-ID"] == "sse-1"


def _request(meta: dict[str, str]) -> HttpRequest:
    request = HttpRequest()
    request.META.update(meta)
    return request
