"""`manage.py workers status|pause|resume|grow|shrink` against the real session worker.

Other test sessions may share the broker, so every test acts on this session's
worker by name, and `--all` is narrowed to it."""

import pytest
from django.core.management.base import CommandError

from jobs import workers
from tests.conftest import QUEUE
from tests.utils import wait_for


def our_name() -> str:
    return next(
        w["name"] for w in workers.workers_status() if w["name"].startswith(f"test-{QUEUE}@")
    )


def concurrency(name: str) -> int | None:
    return workers.worker_status(name)["concurrency"]


@pytest.fixture
def name(worker) -> str:
    return our_name()


@pytest.fixture
def only_ours(monkeypatch, name):
    """`--all` sees only this session's worker (not other sessions' on the same broker)."""
    answering = workers.workers_status
    monkeypatch.setattr(
        workers,
        "workers_status",
        lambda *args, **kwargs: [w for w in answering(*args, **kwargs) if w["name"] == name],
    )


def test_status_lists_the_worker_as_a_table_and_as_json(cli, name):
    header, *rows = cli("workers", "status").splitlines()
    assert header.split() == ["NAME", "CONSUMING", "CONCURRENCY", "ACTIVE", "PROCESSED"]
    row = next(r.split() for r in rows if r.startswith(name + " "))
    assert row[:3] == [name, "yes", "1"]

    listed = cli.json("workers", "status")
    ours = next(w for w in listed if w["name"] == name)
    assert ours["consuming"] is True and ours["concurrency"] == 1 and QUEUE in ours["queues"]

    one = cli.json("workers", "status", name)
    assert one["name"] == name and one["pid"] == ours["pid"]


def test_pause_stops_consuming_and_resume_starts_again(cli, name):
    try:
        paused = cli.json("workers", "pause", name)
        assert paused["name"] == name and paused["consuming"] is False
        assert QUEUE not in paused["queues"]
        assert cli.json("workers", "status", name)["consuming"] is False
    finally:
        resumed = cli.json("workers", "resume", name)
    assert resumed["consuming"] is True and QUEUE in resumed["queues"]
    row = next(r.split() for r in cli("workers", "status", name).splitlines()[1:])
    assert row[:2] == [name, "yes"]


def test_pause_and_resume_all(cli, name, only_ours):
    try:
        out = cli("workers", "pause", "--all")
        assert "1 worker(s) paused" in out
        assert workers.worker_status(name)["consuming"] is False
    finally:
        resumed = cli.json("workers", "resume", "--all")
    assert [(w["name"], w["consuming"]) for w in resumed] == [(name, True)]


def test_grow_then_shrink_changes_the_pool(cli, name):
    try:
        grown = cli.json("workers", "grow", name, "1")
        assert grown["name"] == name
        wait_for(lambda: concurrency(name) == 2, message="the pool to grow to 2")
        shrunk = shrink_one(cli, name)
        assert shrunk["name"] == name
        wait_for(lambda: concurrency(name) == 1, message="the pool to shrink to 1")
    finally:
        restore_one_process(name)


def test_grow_prints_the_new_size(cli, name):
    try:
        out = cli("workers", "grow", name, "1")
        assert f"{name} now has 2 process(es)" in out
    finally:
        restore_one_process(name)


def test_shrinking_to_no_process_is_refused(cli, name):
    with pytest.raises(CommandError, match="would leave none"):
        cli("workers", "shrink", name, "1")
    assert concurrency(name) == 1


@pytest.mark.parametrize("action", ["grow", "shrink"])
def test_n_must_be_at_least_one(cli, name, action):
    with pytest.raises(CommandError, match="at least 1"):
        cli("workers", action, name, "0")
    assert concurrency(name) == 1


def test_an_unknown_worker_names_those_that_answered(cli, name):
    for args in (("status",), ("pause",), ("grow", "1")):
        with pytest.raises(CommandError, match="no worker named 'nobody@nowhere'") as raised:
            cli("workers", args[0], "nobody@nowhere", *args[1:])
        assert name in str(raised.value)


def test_no_worker_answering(cli, monkeypatch):
    monkeypatch.setattr(workers, "workers_status", lambda *args, **kwargs: [])
    assert cli.json("workers", "status") == []
    assert "no worker answered" in cli("workers", "status")
    with pytest.raises(CommandError, match="no worker answered"):
        cli("workers", "pause", "--all")
    with pytest.raises(CommandError, match="no worker answered"):
        cli("workers", "resume", "--all")


def shrink_one(cli, name: str) -> dict:
    """Shrink by one, again if the worker's processes were all busy (its embedded
    beat's periodic tasks run in the same pool)."""

    def attempt() -> dict:
        try:
            return cli.json("workers", "shrink", name, "1")
        except CommandError as exc:
            if "busy" not in str(exc):
                raise
            return {}  # falsy: try again

    return wait_for(attempt, message="an idle process to stop")


def restore_one_process(name: str) -> None:
    """Other tests share this worker and expect one process."""

    def settled() -> bool:
        size = concurrency(name) or 1
        if size > 1:
            try:
                workers.worker_shrink(name, size - 1)
            except workers.WorkerControlError:
                return False  # busy: try again
        return concurrency(name) == 1

    wait_for(settled, message="the pool back at one process")
